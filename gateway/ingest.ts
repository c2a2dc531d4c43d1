/**
 * The ingest pipeline: driver → lock enrolled and signature valid → duplicate, replay or gap →
 * durable append → ack to the lock → notifications (as events of this emitter).
 *
 * The rules are those of docs/PROTOCOL.md §Lock protocol, "Gateway processing":
 * - (lock, ctr) is an event's identity. expected = last stored counter + 1 (1 for a new lock).
 * - ctr < expected with the same payload as the stored (or in-flight) event: a duplicate, acked
 *   again with the stored entry's hash and not stored again. Otherwise: a replay, refused
 *   (ERR_REPLAY, retry=false) and recorded as a health entry (at most one per lock per minute).
 * - ctr > expected: counters below the lock's `oldest` are gone from the lock and become one gap
 *   entry; if the event is still ahead of what the lock holds, it is refused with
 *   ERR_OUT_OF_ORDER (retry=true): the lock resends in order.
 * - A lock that is not enrolled is refused with ERR_LOCK_UNKNOWN (retry=true, so the lock keeps
 *   its events until a technician enrols it) and reported, never stored. A revoked lock:
 *   ERR_LOCK_REVOKED (retry=false), reported the same way. Both are also refused at info.
 * - A payload that is not a valid lock event: ERR_EVENT_INVALID (retry=false), recorded.
 * - A bad lock signature: ERR_LOCK_SIGNATURE (retry=false), recorded like a replay; but when the
 *   lock's info announced another key than the enrolled one, ERR_LOCK_KEY (retry=true): the lock
 *   keeps its events until it is enrolled again with its new key (reported at info).
 * - Counters refused for good that the lock's `oldest` later skips are recorded as a gap with
 *   the refusal code, not as lost at the lock.
 * - The ack is sent only once the entry is durable; an event not answered within the answer
 *   deadline (checks, its turn, its append, or the entry of the event it repeats) gets a nack
 *   ERR_BUSY (retry=true) first, and its ack when it becomes durable.
 *
 * Signatures are checked as soon as an event arrives (in the worker pool when there is one), in
 * parallel across events; each lock's events are then admitted to the chain strictly in arrival
 * order. Memory is bounded by `queueLimit`: events between arrival and answer. At the limit the
 * pipeline stops pulling from the drivers, whose own bounded queues then pause their links, and
 * the locks keep their events. While paused (the runtime pauses while the disk is full) the
 * events taken before wait for the ledger and are acked once durable; each event read meanwhile
 * is answered ERR_BUSY (retry=true) at once, so the lock keeps it, until resume().
 *
 * How the answers go out (acks grouped by their driver's promise, nacks, the deadline's ERR_BUSY,
 * the release of an event's place) is gateway/ingest-answers.ts.
 */
import { EventEmitter } from 'node:events';
import type { Chain, AppendResult } from '../ledger/chain.js';
import type { SignaturePool } from '../ledger/sigpool.js';
import { sigStructure } from '../ledger/cose.js';
import { fingerprint, verify } from '../ledger/crypto.js';
import { decodeEntry, decodeLockPayload, ScannedLockPayload, type EntryInput, type LockPayload } from '../ledger/entry.js';
import { bytesEqual } from '../ledger/base/bytes.js';
import { isOtiError, type ErrorCode } from '../ledger/base/errors.js';
import { leafHash } from '../ledger/merkle.js';
import { isSealedCredential } from '../ledger/privacy.js';
import type { Member } from '../ledger/roster.js';
import type { LinkRef, LockDriver, ReceivedEvent } from '../drivers/driver.js';
import { ANSWER_DEADLINE_MS, BOUND_ANSWERS_VERSION, type LockInfo } from '../drivers/protocol.js';
import { EventQueue } from '../drivers/queue.js';
import { RefusedCounters } from './refusals.js';
import { AnswerDeadlines } from './answer-deadlines.js';
import { LockHealthRecords } from './lock-health.js';
import { IngestAnswers, type IngestEvents } from './ingest-answers.js';

export type { IngestEvents } from './ingest-answers.js';

export interface IngestOptions {
  readonly chain: Chain;
  /** Checks lock signatures off the main thread; without it they are checked inline. */
  readonly pool?: SignaturePool;
  /** Events between arrival and answer before the pipeline stops pulling (default DEFAULT_QUEUE_LIMIT). */
  readonly queueLimit?: number;
  readonly now?: () => number;
  /**
   * Privacy (docs/PRIVACY.md): the ids of the site privacy keys. When given, an event whose
   * `cred` is not a credential sealed under one of them is refused with
   * ERR_PRIVACY_CLEAR_CREDENTIAL (retry=false) and a health record, so no clear credential
   * reference is ever stored.
   */
  readonly privacyKeyIds?: readonly Uint8Array[];
  /** An event not durable this long after arrival is nacked ERR_BUSY (retry=true) meanwhile (default ANSWER_DEADLINE_MS). */
  readonly answerDeadlineMs?: number;
}

interface LockState {
  readonly lock: string;
  /** Last counter admitted (stored or about to be); undefined until loaded. */
  last: number | undefined;
  loading: boolean;
  /** Events waiting for admission, in arrival order; each is admitted once its check is done. */
  readonly queue: Waiting[];
  /**
   * Events admitted and not yet durable, in counter order (they become durable in that order and
   * leave from the front): for duplicates that arrive meanwhile. An array, not a Map by counter,
   * whose table was made again as it grew and shrank with every few events.
   */
  readonly inFlight: Flight[];
  /** Counters refused for good, for telling refusals from losses in gaps. */
  readonly refused: RefusedCounters;
  /** The lock's roster member as of the roster's version `rosterVersion` (looked up for every event: see member()). */
  member: Member | undefined;
  rosterVersion: number;
}

/**
 * One event from arrival to its answer, one object all the way (thousands are in flight under
 * load, and each object they hold is copied by every young-generation collection they live
 * through): first waiting for its signature check (`ok` undefined, or 'unchecked': the check
 * itself failed) and its turn in the lock's order; once admitted, the context of its append
 * (Chain.appendTo) until its entry is durable or refused.
 */
class Waiting {
  ok: boolean | 'unchecked' | undefined = undefined;
  /** Nacked ERR_BUSY meanwhile (AnswerDeadlines). */
  overdue = false;
  /** Answered without an entry of its own (refused, or a duplicate acked or refused). */
  answered = false;
  /** The entry's leaf hash once durable; null once refused. */
  leaf: Uint8Array | null | undefined = undefined;
  /** Duplicates waiting for this entry's fate. */
  waiters: Array<(leaf: Uint8Array | undefined) => void> | undefined = undefined;

  /** `key`: the enrolled key of the lock. */
  constructor(readonly state: LockState, readonly driver: LockDriver, readonly ev: ReceivedEvent, readonly key: Uint8Array, private readonly answerMs: number) {}

  /** When it is nacked ERR_BUSY if not answered by then; computed, not a number boxed per event in flight. */
  get deadline(): number {
    return this.ev.receivedAt + this.answerMs;
  }
}

/** An event admitted to the chain, until its entry is durable (or refused). */
type Flight = Waiting;

/**
 * Events between arrival and answer. Enough for a full site at the sustained rate: signature
 * checks in flight plus the block being filled plus the block being written (1,024 held the
 * pipeline to about 80% of its rate in bench:ingest); a few MB at most.
 */
export const DEFAULT_QUEUE_LIMIT = 4096;

/** The signature was checked before admission (one object for every append). */
const PREVERIFIED = { preverified: true } as const;
const UNENROLLED_REPORT_MS = 60_000;

export class Ingest extends EventEmitter<IngestEvents> {
  private readonly chain: Chain;
  private readonly pool: SignaturePool | undefined;
  private readonly limit: number;
  private readonly now: () => number;
  private readonly privacyKeyIds: readonly Uint8Array[] | undefined;
  private readonly answerDeadlineMs: number;
  private readonly locks = new Map<string, LockState>();
  /**
   * Events past their screening and not yet answered, for the answer deadline (one timer for
   * all): waiting for their signature check or their turn, admitted and not yet durable, or
   * duplicates waiting for the entry of the event they repeat.
   */
  private readonly deadlines = new AnswerDeadlines<Waiting>(() => this.now(), (w) => w.answered || w.leaf !== undefined, (w) => this.answers.busy(w.driver, w.ev));
  private readonly unenrolledSeen = new Map<string, number>();
  private readonly loops: Promise<void>[] = [];
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private closed = false;
  private paused = false;
  private idle: (() => void) | undefined;
  private readonly answers = new IngestAnswers(this, () => this.now(), () => this.release());
  /** Health entries about locks, at most one a minute per lock (what is held back follows within the minute). */
  private readonly health = new LockHealthRecords((input) => this.record(input), () => this.now());

  constructor(opts: IngestOptions) {
    super();
    this.chain = opts.chain;
    this.pool = opts.pool;
    this.limit = opts.queueLimit ?? DEFAULT_QUEUE_LIMIT;
    this.now = opts.now ?? Date.now;
    this.privacyKeyIds = opts.privacyKeyIds;
    this.answerDeadlineMs = opts.answerDeadlineMs ?? ANSWER_DEADLINE_MS;
  }

  /** Events between arrival and answer. */
  get depth(): number {
    return this.active;
  }

  /** Consumes a started driver's events and notices until the driver stops or close(). */
  attach(driver: LockDriver): void {
    this.loops.push(this.pullEvents(driver), this.pullNotices(driver));
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Admits no more events until resume(): each one read meanwhile is answered ERR_BUSY (retry) at
   * once; the events already taken go on.
   */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** Stops pulling, and waits for every event taken to be answered. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w();
    if (this.active > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    this.health.close();
  }

  private async pullEvents(driver: LockDriver): Promise<void> {
    const events = driver.events();
    const it = events[Symbol.asyncIterator]();
    // A driver's own queue hands over what it holds without a promise per event (drivers/queue.ts).
    const queue = events instanceof EventQueue ? (events as EventQueue<ReceivedEvent>) : undefined;
    try {
      for (;;) {
        let ev = queue?.poll();
        if (ev === undefined) {
          const r = await it.next();
          if (r.done === true) return;
          ev = r.value;
        }
        if (this.closed) {
          await driver.nack(ev, 'ERR_BUSY', true);
          continue;
        }
        if (this.paused) {
          // The disk is full: nothing read now could be made durable within the answer deadline,
          // so the lock keeps it and resends it later (docs/PROTOCOL.md §Flow, answers and resends).
          await this.answers.nack(driver, ev, 'ERR_BUSY', true).catch((e: unknown) => this.emit('fault', e as Error));
          continue;
        }
        this.active++;
        this.handle(driver, ev);
        while (this.active >= this.limit && !this.closed) await new Promise<void>((resolve) => this.waiting.push(resolve));
      }
    } catch (e) {
      // As `for await` would: the stream is told that its consumer is gone.
      await it.return?.();
      throw e;
    }
  }

  private async pullNotices(driver: LockDriver): Promise<void> {
    for await (const n of driver.notices()) {
      this.emit('notice', n);
      if (n.kind === 'blind' && !this.closed) {
        this.record({ kind: 'gap', source: n.driver, start: n.start, end: n.end, reason: n.reason.slice(0, 512) });
      } else if (n.kind === 'lock-seen') {
        await this.screenInfo(driver, n.info, n.from);
      }
    }
  }

  /**
   * What a lock says in its info, against the roster: not enrolled (ERR_LOCK_UNKNOWN, retry),
   * revoked (ERR_LOCK_REVOKED), or announcing another key than the enrolled one (ERR_LOCK_KEY,
   * retry: enrol it again). Each is reported like an unenrolled lock and refused on its link; a
   * different key is also recorded in the chain (a health entry, rate-limited per lock).
   */
  private async screenInfo(driver: LockDriver, info: LockInfo, from: LinkRef): Promise<void> {
    const m = this.chain.roster.get('lock', info.lock);
    let refusal: [code: ErrorCode, retry: boolean, detail: string] | undefined;
    if (m === undefined) refusal = ['ERR_LOCK_UNKNOWN', true, `lock ${info.lock} is not enrolled`];
    else if (m.revoked) refusal = ['ERR_LOCK_REVOKED', false, `lock ${info.lock} was revoked`];
    else if (info.key !== undefined && !bytesEqual(info.key, m.key)) {
      refusal = ['ERR_LOCK_KEY', true, `lock ${info.lock} announced key ${fingerprint(info.key)}, enrolled is ${fingerprint(m.key)}`];
      this.health.record(info.lock, 'key-mismatch', refusal[2]);
    }
    if (refusal === undefined) return;
    this.reportUnenrolled(info.lock, info, from);
    this.emit('notice', { kind: 'rejected', from, code: refusal[0], detail: refusal[2], time: this.now() });
    // A version 1 lock does not know refuse (docs/PROTOCOL.md §Versions): it learns the code from its nacks.
    if ((info.v ?? 1) >= BOUND_ANSWERS_VERSION) await driver.refuseLink?.(from, refusal[0], refusal[1]);
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
    if (this.active === 0) this.idle?.();
  }

  /**
   * One event, from arrival to its answer (then release()). Never throws. The signature check
   * starts at once, so that a lock's events are checked in parallel; they are admitted in order.
   */
  private handle(driver: LockDriver, ev: ReceivedEvent): void {
    let member;
    try {
      member = this.screen(driver, ev);
    } catch (e) {
      // A listener threw: the event is still answered, and its place released.
      this.emit('fault', e as Error);
      return this.answers.answer(this.refuse(driver, ev, 'ERR_BUSY', true));
    }
    if (member === undefined) return;
    const state = this.lockState(ev.lock);
    const w = new Waiting(state, driver, ev, member.key, this.answerDeadlineMs);
    state.queue.push(w);
    this.deadlines.add(w);
    // Checked here, or in the pool, which calls onChecked with the result.
    const checked = this.checkSignature(w);
    if (checked !== undefined) this.onChecked(w, checked);
  }

  /** An event's signature check is done (an Error: the pool failed, not the event); admits what is ready. */
  private readonly onChecked = (w: Waiting, result: boolean | Error): void => {
    if (typeof result === 'boolean') w.ok = result;
    else {
      // The lock keeps the event and sends it again.
      this.emit('fault', result);
      w.ok = 'unchecked';
    }
    this.admitReady(w.state);
  };

  /**
   * The checks before the signature: the lock's enrolment and what it allows. Answers and returns
   * undefined when refused; the answer is the last thing done, so a listener that throws leaves
   * the event unanswered for handle() to answer.
   */
  private screen(driver: LockDriver, ev: ReceivedEvent): { readonly key: Uint8Array } | undefined {
    this.emit('received', ev);
    const member = this.member(ev.lock);
    if (member === undefined || member.revoked) {
      this.reportUnenrolled(ev.lock, ev.info, ev.from);
      this.answers.answer(member === undefined ? this.refuse(driver, ev, 'ERR_LOCK_UNKNOWN', true) : this.refuse(driver, ev, 'ERR_LOCK_REVOKED', false));
      return undefined;
    }
    if (ev.invalid !== undefined) {
      this.health.record(ev.lock, 'invalid-event', `event ${ev.ctr} refused: ${ev.invalid.code}: ${ev.invalid.detail}`);
      this.answers.answer(this.refuse(driver, ev, 'ERR_EVENT_INVALID', false));
      return undefined;
    }
    const signed = 'cose' in ev.payload;
    if (!signed && !member.unsigned) {
      this.answers.answer(this.refuse(driver, ev, 'ERR_LOCK_SIGNATURE', false));
      return undefined;
    }
    if (this.privacyKeyIds !== undefined && !credentialSealed(ev, this.privacyKeyIds)) {
      this.health.record(ev.lock, 'clear-credential', `event ${ev.ctr} carries a credential reference not sealed to the site privacy key`);
      this.answers.answer(this.refuse(driver, ev, 'ERR_PRIVACY_CLEAR_CREDENTIAL', false));
      return undefined;
    }
    return member;
  }

  /**
   * The result when known at once (no pool, unsigned, unreadable, or the pool refused the check:
   * an Error); undefined when the pool will call onChecked.
   */
  private checkSignature(w: Waiting): boolean | Error | undefined {
    const ev = w.ev;
    if (!('cose' in ev.payload)) return true;
    let p;
    try {
      p = payloadOf(ev);
      if (this.pool === undefined) {
        const cose = p.parsed!;
        return verify(w.key, sigStructure(cose.payload), cose.signature);
      }
    } catch {
      return false;
    }
    try {
      // Packed from the driver's buffer where the fast decoder found it (no views to hold).
      if (p instanceof ScannedLockPayload) this.pool.checkCoseAt(w.key, p.source, p.payloadStart, p.payloadEnd, p.sigStart, w, this.onChecked);
      else this.pool.checkCose(w.key, p.parsed!.payload, p.parsed!.signature, w, this.onChecked);
      return undefined;
    } catch (e) {
      // A key or signature of the wrong length is a bad signature; anything else is the pool's failure.
      return isOtiError(e, 'ERR_ARGUMENT') ? false : (e as Error);
    }
  }

  /** Admits the lock's events whose checks are done, in arrival order, up to the first still checked. */
  private admitReady(state: LockState): void {
    if (state.last === undefined) {
      if (state.loading) return;
      // The lock's last stored counter, once (again after a failed append).
      state.loading = true;
      this.chain.lastCounter(state.lock).then(
        (last) => {
          state.loading = false;
          state.last ??= Math.max(last, 0);
          this.admitReady(state);
        },
        (e: unknown) => {
          state.loading = false;
          this.emit('fault', e as Error);
          for (const w of state.queue.splice(0)) this.settle(w, this.refuse(w.driver, w.ev, 'ERR_BUSY', true));
        },
      );
      return;
    }
    const q = state.queue;
    while (q.length > 0 && q[0]!.ok !== undefined && state.last !== undefined) {
      const w = q.shift()!;
      try {
        this.admit(w, state);
      } catch (e) {
        this.emit('fault', e as Error);
        this.settle(w, this.refuse(w.driver, w.ev, 'ERR_BUSY', true));
      }
    }
    if (q.length > 0 && state.last === undefined) this.admitReady(state);
  }

  /** Answers an event that gets no entry of its own (its deadline no longer runs). */
  private settle(w: Waiting, answer: Promise<void>): void {
    w.answered = true;
    this.answers.answer(answer);
  }

  /** Decides an event's fate in its lock's order (state.last is known). */
  private admit(w: Waiting, state: LockState): void {
    const { driver, ev } = w;
    if (w.ok === 'unchecked') return this.settle(w, this.refuse(driver, ev, 'ERR_BUSY', true));
    if (!w.ok) {
      if (ev.info?.key !== undefined && !bytesEqual(ev.info.key, w.key)) {
        // Signed with the key its info announced, not the enrolled one: kept until enrolled again.
        return this.settle(w, this.refuse(driver, ev, 'ERR_LOCK_KEY', true));
      }
      this.health.record(ev.lock, 'bad-signature', `event ${ev.ctr} is not signed by the enrolled key`);
      return this.settle(w, this.refuse(driver, ev, 'ERR_LOCK_SIGNATURE', false));
    }
    let expected = state.last! + 1;
    if (ev.ctr < expected) return this.answers.answer(this.earlier(w, state));
    if (ev.ctr > expected && ev.oldest > expected) {
      // The lock no longer holds expected .. oldest-1: record them as missing, once; those this
      // gateway refused for good as refused (with the code), the rest as lost at the lock.
      const to = ev.oldest - 1;
      for (const run of state.refused.split(expected, to)) this.record({ kind: 'gap', lock: ev.lock, ...run });
      state.last = to;
      expected = ev.oldest;
    }
    if (ev.ctr > expected) return this.settle(w, this.refuse(driver, ev, 'ERR_OUT_OF_ORDER', true));
    const input: EntryInput = 'cose' in ev.payload ? { kind: 'lock-event', cose: ev.payload.cose } : { kind: 'lock-event', unsignedEvent: ev.payload.event };
    const flight: Flight = w;
    state.last = ev.ctr;
    state.inFlight.push(flight);
    // Admitted in call order: a gap recorded just above goes in before this event.
    this.chain.appendTo(input, PREVERIFIED, flight, this.onDurable);
  }

  /** An admitted event's append is done: durable (ack it) or refused (nack it). Never throws. */
  private readonly onDurable = (f: Flight, result: AppendResult | Error): void => {
    const { state, driver, ev } = f;
    const q = state.inFlight;
    const i = q[0] === f ? 0 : q.indexOf(f);
    if (i === 0) q.shift();
    else if (i > 0) q.splice(i, 1);
    f.leaf = result instanceof Error ? null : result.leafHash;
    this.deadlines.settled();
    if (f.waiters !== undefined) for (const w of f.waiters.splice(0)) w(f.leaf ?? undefined);
    if (!(result instanceof Error)) return this.answers.ack(driver, ev, result);
    // Not admitted after all: forget the optimistic counter so that it is read again.
    state.last = undefined;
    const code = isOtiError(result) ? result.code : 'ERR_BUSY';
    if (code === 'ERR_APPEND_ABORTED' || !isOtiError(result)) {
      if (!isOtiError(result)) this.emit('fault', result);
      this.answers.answer(this.refuse(driver, ev, 'ERR_BUSY', true));
    } else {
      this.answers.answer(this.refuse(driver, ev, code, false));
    }
  };

  /**
   * An event at or below the last stored counter: a duplicate (the same lock-event bytes as the
   * stored or in-flight one; its signature was verified before) or a replay. A duplicate of an
   * event not yet durable waits for its entry, under its own answer deadline (ERR_BUSY first if
   * that passes), and is acked with it; if that event is not stored after all, the lock is told
   * to resend (ERR_BUSY). Nothing is stored for it.
   */
  private async earlier(w: Waiting, state: LockState): Promise<void> {
    const { driver, ev } = w;
    try {
      const payload = eventBytes(ev);
      const flying = state.inFlight.findLast((f) => f.ev.ctr === ev.ctr);
      let entry: Uint8Array | undefined;
      if (flying !== undefined) {
        if (bytesEqual(eventBytes(flying.ev), payload)) {
          entry = await durableLeaf(flying);
          if (entry === undefined) return await this.refuse(driver, ev, 'ERR_BUSY', true);
        }
      } else {
        entry = await this.storedHash(ev, payload);
      }
      if (entry !== undefined) {
        await driver.ack(ev, entry);
        this.emit('duplicate', ev, entry);
        return;
      }
      this.health.record(ev.lock, 'replay', `counter ${ev.ctr} again, with other content or after it was recorded missing (last ${state.last ?? '?'})`);
      return await this.refuse(driver, ev, 'ERR_REPLAY', false);
    } finally {
      w.answered = true;
    }
  }

  /** The leaf hash of the stored event with this identity, if its payload is the same. */
  private async storedHash(ev: ReceivedEvent, payload: Uint8Array): Promise<Uint8Array | undefined> {
    const index = await this.chain.indexOf(`${ev.lock}:${ev.ctr}`);
    if (index === undefined) return undefined;
    const bytes = await this.chain.entry(index);
    const body = decodeEntry(bytes).body;
    if (body.kind !== 'lock-event') return undefined;
    const stored = body.prov === 'lock-signed' ? body.parsed.payload : body.eventBytes;
    return bytesEqual(stored, payload) ? leafHash(bytes) : undefined;
  }

  private async refuse(driver: LockDriver, ev: ReceivedEvent, code: ErrorCode, retry: boolean): Promise<void> {
    // Remembered for the gap its `oldest` will skip (a revoked lock sends nothing more; a replay is behind).
    if (!retry && code !== 'ERR_REPLAY' && code !== 'ERR_LOCK_REVOKED' && this.chain.roster.get('lock', ev.lock) !== undefined) {
      this.lockState(ev.lock).refused.note(ev.ctr, code);
    }
    await this.answers.nack(driver, ev, code, retry);
  }

  /**
   * The roster member of a lock, remembered by its state while the roster stays the same
   * (Roster.get makes its key string per call). A lock with no state yet is looked up in the
   * roster alone: no state is made for ids that may not be enrolled.
   */
  private member(lock: string): Member | undefined {
    const roster = this.chain.roster;
    const s = this.locks.get(lock);
    if (s?.rosterVersion === roster.version) return s.member;
    const m = roster.get('lock', lock);
    if (s !== undefined) {
      s.member = m;
      s.rosterVersion = roster.version;
    }
    return m;
  }

  private lockState(lock: string): LockState {
    let s = this.locks.get(lock);
    if (s === undefined) {
      s = { lock, last: undefined, loading: false, queue: [], inFlight: [], refused: new RefusedCounters(), member: undefined, rosterVersion: -1 };
      this.locks.set(lock, s);
    }
    return s;
  }

  private reportUnenrolled(lock: string, info: LockInfo | undefined, from: LinkRef): void {
    const t = this.now();
    const last = this.unenrolledSeen.get(lock);
    if (last !== undefined && t - last < UNENROLLED_REPORT_MS) return;
    if (this.unenrolledSeen.size >= 1024) this.unenrolledSeen.clear();
    this.unenrolledSeen.set(lock, t);
    this.emit('unenrolled', lock, info, from);
  }

  /** Appends a gap or health entry; a failure is a fault, except a chain closed before the pipeline's last health entries. */
  private record(input: EntryInput): void {
    this.chain.append(input).then(
      (r) => this.emit('recorded', r),
      (e: unknown) => {
        if (!(this.closed && isOtiError(e, 'ERR_APPEND_ABORTED'))) this.emit('fault', e as Error);
      },
    );
  }
}

/** The leaf hash of an admitted event once durable; undefined if it was refused. */
function durableLeaf(f: Flight): Promise<Uint8Array | undefined> | Uint8Array | undefined {
  if (f.leaf !== undefined) return f.leaf ?? undefined;
  return new Promise((resolve) => (f.waiters ??= []).push(resolve));
}

/** The event's payload decoded: the driver's decoding when it has one for these bytes (else decoded here; throws if invalid). */
function payloadOf(ev: ReceivedEvent): LockPayload {
  const signed = 'cose' in ev.payload;
  const bytes = 'cose' in ev.payload ? ev.payload.cose : ev.payload.event;
  const d = ev.decoded;
  // (A scanned payload says whether it is signed without making the views of `parsed`.)
  return d !== undefined && d.bytes === bytes && (d instanceof ScannedLockPayload ? d.sigStart >= 0 : d.parsed !== undefined) === signed ? d : decodeLockPayload(bytes, signed);
}

/** The lock-event bytes of an event: the COSE payload, or the bare event (what "identical" compares). */
function eventBytes(ev: ReceivedEvent): Uint8Array {
  return 'cose' in ev.payload ? payloadOf(ev).parsed!.payload : ev.payload.event;
}

/** True when the event has no `cred` or a sealed one; undecodable events are left to the chain's checks. */
function credentialSealed(ev: ReceivedEvent, keyIds: readonly Uint8Array[]): boolean {
  let cred: Uint8Array | undefined;
  try {
    cred = payloadOf(ev).event.cred;
  } catch {
    return true;
  }
  return cred === undefined || isSealedCredential(cred, keyIds);
}
