/**
 * The open range requests of this node's pulls, and the decoding of the range messages that
 * answer them (docs/PROTOCOL.md §Sync): a message is queued for the request it names, from the
 * responder it was asked of; one that answers no open request (late, replayed, unasked, or a
 * second copy after the request ended) is dropped unread.
 */
import { decodeRange, type RangeMessage } from './wire.js';
import type { Link } from './context.js';

export interface Inbox {
  readonly id: number;
  readonly responder: string;
  readonly chain: string;
  readonly link: Link;
  readonly queue: RangeMessage[];
  wake: (() => void) | undefined;
  closed: boolean;
}

export class Inboxes {
  readonly #open = new Map<number, Inbox>();

  constructor(private readonly maxBytes: number) {}

  open(id: number, responder: string, chain: string, link: Link): Inbox {
    const inbox: Inbox = { id, responder, chain, link, queue: [], wake: undefined, closed: false };
    this.#open.set(id, inbox);
    return inbox;
  }

  /** Closes the request and forgets it. */
  remove(inbox: Inbox): void {
    close(inbox);
    this.#open.delete(inbox.id);
  }

  /** Decodes a range message from `responder` and queues it for its request; returns whether one took it. */
  receive(responder: string, payload: Buffer): boolean {
    const msg = decodeRange(payload, this.maxBytes);
    const inbox = this.#open.get(msg.id);
    if (inbox === undefined || inbox.responder !== responder || inbox.closed) return false;
    inbox.queue.push(msg);
    inbox.wake?.();
    return true;
  }

  /** The next message of a request if one has arrived (without waiting). */
  take(inbox: Inbox): RangeMessage | undefined {
    return inbox.queue.shift();
  }

  /** The next message of a request; undefined once it is closed or after `timeoutMs` without one. */
  next(inbox: Inbox, timeoutMs: number): Promise<RangeMessage | undefined> {
    const ready = inbox.queue.shift();
    if (ready !== undefined || inbox.closed) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        inbox.wake = undefined;
        resolve(undefined);
      }, timeoutMs);
      inbox.wake = () => {
        clearTimeout(timer);
        inbox.wake = undefined;
        resolve(inbox.queue.shift());
      };
    });
  }

  /** Ends the waits of the requests that match (their pulls end; what was stored stays). */
  closeWhere(match: (inbox: Inbox) => boolean): void {
    for (const inbox of this.#open.values()) if (match(inbox)) close(inbox);
  }
}

export function close(inbox: Inbox): void {
  inbox.closed = true;
  inbox.wake?.();
}
