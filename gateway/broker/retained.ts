/**
 * Who holds the broker's retained messages, and caps per principal on their count and bytes.
 *
 * A retained message stays in the broker's memory until someone replaces or clears it, and is
 * sent to every new subscriber (MQTT 3.1.1 §3.3.1.3), so each principal that may retain (peer
 * gateways: their state, checkpoints, cosignatures and evidence) may hold at most `maxMessages`
 * retained topics and `maxBytes` of payload. Replacing one's own message counts only the new
 * size; clearing one (an empty retained payload) is always allowed and frees it. Messages the
 * gateway retains itself (`local`) are bounded by their own settings and are not counted here;
 * one of them replacing a client's message frees that client's share.
 */

export interface RetainedCaps {
  readonly maxMessages: number;
  readonly maxBytes: number;
}

interface Usage {
  messages: number;
  bytes: number;
}

export class RetainedQuota {
  readonly #caps: RetainedCaps;
  readonly #topics = new Map<string, { owner: string; bytes: number }>();
  readonly #usage = new Map<string, Usage>();

  constructor(caps: RetainedCaps) {
    this.#caps = caps;
  }

  /**
   * `owner` retains `bytes` of payload on `topic` (0: clears it). Records it and returns
   * undefined when within the caps; otherwise returns which cap it would exceed and changes nothing.
   */
  admit(owner: string, topic: string, bytes: number): 'messages' | 'bytes' | undefined {
    const held = this.#topics.get(topic);
    if (bytes === 0) {
      this.release(topic);
      return undefined;
    }
    const u = this.#usage.get(owner) ?? { messages: 0, bytes: 0 };
    const mine = held !== undefined && held.owner === owner ? held.bytes : undefined;
    if (mine === undefined && u.messages + 1 > this.#caps.maxMessages) return 'messages';
    if (u.bytes - (mine ?? 0) + bytes > this.#caps.maxBytes) return 'bytes';
    this.release(topic);
    u.messages++;
    u.bytes += bytes;
    this.#usage.set(owner, u);
    this.#topics.set(topic, { owner, bytes });
    return undefined;
  }

  /** The retained message on `topic` is gone or replaced by one not counted here. */
  release(topic: string): void {
    const held = this.#topics.get(topic);
    if (held === undefined) return;
    this.#topics.delete(topic);
    const u = this.#usage.get(held.owner);
    if (u === undefined) return;
    u.messages--;
    u.bytes -= held.bytes;
    if (u.messages === 0) this.#usage.delete(held.owner);
  }

  /** Retained messages and bytes held for all principals. */
  total(): Usage {
    let messages = 0;
    let bytes = 0;
    for (const u of this.#usage.values()) {
      messages += u.messages;
      bytes += u.bytes;
    }
    return { messages, bytes };
  }
}
