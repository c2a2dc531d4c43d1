/**
 * What comes in on BLE links: fragments → messages → events, with back-pressure. While the event
 * queue is full a link's fragments wait in a small bounded buffer; beyond it the link is dropped
 * and the lock resends later. More distinct events unanswered than the window are nacked
 * ERR_WINDOW; repeated garbage from a link (more than `garbagePerMinute` rejections) drops it
 * with backoff. Also the books of handed-out events: which link each came from, until answered.
 */
import { decodeLockMessage, MESSAGE_MAX_BYTES, readUnacceptableEvent } from '../protocol.js';
import { receivedEvent, unacceptableEvent, type DriverNotice, type ReceivedEvent } from '../driver.js';
import type { EventQueue } from '../queue.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { messageOf, type Link } from './link.js';

/** Fragments held per link while the event queue is full; beyond either bound the link is dropped. */
const MAX_PAUSED_FRAGMENTS = 256;
const MAX_PAUSED_BYTES = 2 * MESSAGE_MAX_BYTES;

export interface InboundCounters {
  framesIn: number;
  framesRejected: number;
  eventsIn: number;
}

export interface InboundOptions {
  /** hello.window. */
  readonly window: number;
  readonly garbagePerMinute: number;
  readonly events: EventQueue<ReceivedEvent>;
  readonly counters: InboundCounters;
  readonly now: () => number;
  readonly notice: (n: DriverNotice) => void;
  /** Drops a link with backoff. */
  readonly close: (link: Link, reason: string) => Promise<void>;
  /** Answers an event with a nack (the window's ERR_WINDOW). */
  readonly nack: (ev: ReceivedEvent, code: string, retry: boolean) => Promise<void>;
}

export class Inbound {
  /** Which link each handed-out, unanswered event came from. */
  private readonly origins = new WeakMap<ReceivedEvent, Link>();

  constructor(private readonly o: InboundOptions) {}

  /** A fragment arrived on `link` (the events characteristic's 'data'). */
  readonly data = (link: Link, data: Uint8Array): void => {
    if (link.closed) return;
    this.o.counters.framesIn++;
    link.lastData = this.o.now();
    if (link.inbox.length >= MAX_PAUSED_FRAGMENTS || link.inboxBytes + data.length > MAX_PAUSED_BYTES) {
      void this.o.close(link, 'gateway busy: too many fragments waiting; the lock will resend');
      return;
    }
    link.inbox.push(data);
    link.inboxBytes += data.length;
    if (!link.pumping) void this.pump(link);
  };

  /** Takes an event's answer off its link's books; undefined if there is nobody to answer. */
  answer(ev: ReceivedEvent): Link | undefined {
    const link = this.origins.get(ev);
    if (link === undefined) return undefined;
    this.origins.delete(ev);
    link.outstanding--;
    link.inWindow.answered(ev);
    link.lastData = this.o.now();
    return link.closed ? undefined : link;
  }

  /** Counts a refused message against the link's garbage limit; too many drop the link. */
  reject(link: Link, code: string, detail: string): void {
    const t = this.o.now();
    this.o.counters.framesRejected++;
    this.o.notice({ kind: 'rejected', from: link.ref, code, detail, time: t });
    link.rejections.push(t);
    while ((link.rejections[0] ?? t) <= t - 60000) link.rejections.shift();
    if (link.rejections.length > this.o.garbagePerMinute) void this.o.close(link, 'too many rejected messages');
  }

  /** Processes a link's fragments in order, waiting for room in the event queue. */
  private async pump(link: Link): Promise<void> {
    link.pumping = true;
    try {
      for (let frag = link.inbox.shift(); frag !== undefined && !link.closed; frag = link.inbox.shift()) {
        link.inboxBytes -= frag.length;
        const ev = this.take(link, frag);
        if (ev === undefined) continue;
        link.outstanding++;
        this.origins.set(ev, link);
        this.o.counters.eventsIn++;
        if (!link.inWindow.admit(ev, this.o.window)) {
          this.o.notice({ kind: 'rejected', from: link.ref, code: 'ERR_WINDOW', detail: `event ${ev.lock}:${ev.ctr} with ${this.o.window} events unanswered`, time: this.o.now() });
          await this.o.nack(ev, 'ERR_WINDOW', true);
          continue;
        }
        if (!(await this.o.events.put(ev))) return;
      }
    } finally {
      link.pumping = false;
    }
  }

  /** One fragment in; an event out when it completed an event message. Never throws. */
  private take(link: Link, frag: Uint8Array): ReceivedEvent | undefined {
    let message: Uint8Array | undefined;
    try {
      const r = link.reassembler.push(frag);
      if (r === undefined) return undefined;
      if (!r.ok) {
        this.reject(link, r.code, r.detail);
        return undefined;
      }
      message = r.message;
      const m = decodeLockMessage(r.message);
      if (m.t === 'info') {
        link.info = m.info;
        this.o.notice({ kind: 'lock-seen', from: link.ref, info: m.info, time: this.o.now() });
        return undefined;
      }
      if (link.info !== undefined && m.lock !== link.info.lock) {
        this.reject(link, 'ERR_MESSAGE', `event of lock ${m.lock} on the link of lock ${link.info.lock}`);
        return undefined;
      }
      return receivedEvent(m, link.ref, link.info, this.o.now());
    } catch (e) {
      // An event the gateway can never accept, naming its lock and counter: refused for good by the pipeline.
      const u = message !== undefined ? readUnacceptableEvent(message, e) : undefined;
      if (u !== undefined && (link.info === undefined || u.lock === link.info.lock)) return unacceptableEvent(u, link.ref, link.info, this.o.now());
      this.reject(link, isOtiError(e) ? e.code : 'ERR_MESSAGE', messageOf(e));
      return undefined;
    }
  }
}
