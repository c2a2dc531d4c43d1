/**
 * The ingest pipeline's answers to the locks: acks of durable events, nacks of refused ones and
 * of those past their answer deadline, each followed by the pipeline's event for it (committed,
 * rejected) and, for acks and refusals, the release of the event's place in the pipeline.
 *
 * Every answer goes through its driver's promise; a driver or a listener that throws is reported
 * as a fault, and the event's place is released all the same. Nothing here decides an event's
 * fate: gateway/ingest.ts does, and hands the answer over.
 */
import type { EventEmitter } from 'node:events';
import type { AppendResult } from '../ledger/chain.js';
import type { ErrorCode } from '../ledger/base/errors.js';
import type { DriverNotice, LinkRef, LockDriver, ReceivedEvent } from '../drivers/driver.js';
import type { LockInfo } from '../drivers/protocol.js';

/** What the pipeline (gateway/ingest.ts) tells its listeners; the answers below emit most of them. */
export interface IngestEvents {
  /** An event arrived from a driver (before any check). */
  received: [ev: ReceivedEvent];
  /** An event is durable and its ack was sent. `latencyMs`: arrival to ack. */
  committed: [ev: ReceivedEvent, result: AppendResult, latencyMs: number];
  /** A duplicate was acknowledged again with the stored entry's hash. */
  duplicate: [ev: ReceivedEvent, entry: Uint8Array];
  /** An event was refused with this code. */
  rejected: [ev: ReceivedEvent, code: ErrorCode, retry: boolean];
  /** A lock that is not enrolled sent events or identified itself. */
  unenrolled: [lock: string, info: LockInfo | undefined, from: LinkRef];
  /** A gap, blind interval or health record was appended. */
  recorded: [result: AppendResult];
  /** A driver notice (frames rejected, links up and down, locks seen). */
  notice: [notice: DriverNotice];
  /** Something failed that is not an event's fault (the chain could not append, for example). */
  fault: [error: Error];
}

/** Acks whose driver answered with the same promise: the events and results, in pairs (IngestAnswers.ack). */
interface AckGroup {
  readonly sent: Promise<void>;
  readonly acks: Array<ReceivedEvent | AppendResult>;
}

export class IngestAnswers {
  /** The last group of acks still waiting on its driver's promise (ack()). */
  private acking: AckGroup | undefined;

  /**
   * @param out the pipeline, whose listeners are told of each answer
   * @param release frees one event's place in the pipeline once its answer went out (or failed)
   */
  constructor(
    private readonly out: EventEmitter<IngestEvents>,
    private readonly now: () => number,
    private readonly release: () => void,
  ) {}

  /** Releases an event's place in the pipeline once its answer (this promise) went out. */
  answer(p: Promise<void>): void {
    p.then(this.released, this.failed);
  }

  private readonly released = (): void => this.release();

  /** An answer that could not be sent (or a listener that threw): reported, and the place released. */
  readonly failed = (e: unknown): void => {
    this.out.emit('fault', e as Error);
    this.release();
  };

  /** Nacks an event and tells the listeners (the place is released by answer()). */
  async nack(driver: LockDriver, ev: ReceivedEvent, code: ErrorCode, retry: boolean): Promise<void> {
    await driver.nack(ev, code, retry);
    this.out.emit('rejected', ev, code, retry);
  }

  /**
   * The answer deadline passed before the event became durable: a nack ERR_BUSY (retry=true). The
   * lock keeps the event; the ack follows when the entry is durable, and a resend meanwhile is
   * recognised as a duplicate and answered with that ack. The event keeps its place.
   */
  busy(driver: LockDriver, ev: ReceivedEvent): void {
    let sent: Promise<void>;
    try {
      sent = driver.nack(ev, 'ERR_BUSY', true);
    } catch (e) {
      sent = Promise.reject(e as Error);
    }
    sent.then(
      () => this.out.emit('rejected', ev, 'ERR_BUSY', true),
      (e: unknown) => this.out.emit('fault', e as Error),
    );
  }

  /**
   * Acks a durable event, then tells the listeners and releases its place. A driver or listener
   * that throws is reported as a fault (the place is released all the same).
   */
  ack(driver: LockDriver, ev: ReceivedEvent, result: AppendResult): void {
    let sent: Promise<void>;
    try {
      sent = driver.ack(ev, result.leafHash);
    } catch (e) {
      sent = Promise.reject(e as Error);
    }
    // Acks answered with the promise of the ack before (a driver's one shared resolved promise,
    // drivers/inprocess.ts) wait on it together: a block's acks cost one reaction, not a closure,
    // a promise and a reaction each. Each is still told only once its own promise settled.
    const g = this.acking;
    if (g?.sent === sent) {
      g.acks.push(ev, result);
      return;
    }
    const group: AckGroup = { sent, acks: [ev, result] };
    this.acking = group;
    sent.then(
      () => this.acked(group),
      (e: unknown) => {
        if (this.acking === group) this.acking = undefined;
        for (let i = 0; i < group.acks.length; i += 2) this.failed(e);
      },
    );
  }

  /** A group of acks went out: tells the listeners and releases their places. */
  private acked(group: AckGroup): void {
    if (this.acking === group) this.acking = undefined;
    const acks = group.acks;
    for (let i = 0; i < acks.length; i += 2) {
      const ev = acks[i] as ReceivedEvent;
      try {
        this.out.emit('committed', ev, acks[i + 1] as AppendResult, this.now() - ev.receivedAt);
      } catch (e) {
        this.out.emit('fault', e as Error);
      }
      this.release();
    }
  }
}
