/**
 * The client side of C2SP tlog-witness: pushes this gateway's checkpoints to the external
 * witnesses it is configured with (witness.external) by `POST <url>/add-checkpoint`, and hands
 * every valid cosignature to the coverage tracker, where k of them (witness.externalQuorum)
 * are needed for confirmation. docs/SYNC.md §External witnesses.
 *
 * One request in flight per witness; a witness that falls behind gets the newest checkpoint
 * only. The old size starts at 0 and is corrected by the witness's 409 answer; the consistency
 * proof comes from the chain. Failures wait for the next block.
 */
import { OtiError } from '../../ledger/base/errors.js';
import { parseCheckpoint, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { consistencyProof } from '../../ledger/merkle.js';
import type { Chain } from '../../ledger/chain.js';
import type { Logger } from '../log.js';
import { verifyCosignature } from './witness.js';

export interface ExternalWitness {
  readonly url: string;
  readonly name: string;
  readonly key: Uint8Array;
}

export interface WitnessPushOptions {
  readonly chain: Chain;
  readonly witnesses: readonly ExternalWitness[];
  readonly timeoutMs: number;
  /** Resolves once a checkpoint may leave the gateway (the last-checkpoint record covers it). */
  readonly beforeAnnounce?: (cp: SignedCheckpoint) => Promise<void>;
  /** A verified cosignature: `cosigned` is the checkpoint with the witness's line added. */
  readonly onCosigned: (witness: string, size: number, timestampS: number, cosigned: SignedCheckpoint) => void;
  readonly logger?: Logger;
  readonly now?: () => number;
}

interface WitnessSlot {
  readonly w: ExternalWitness;
  /** The size the witness last cosigned, as far as this gateway knows. */
  known: number;
  target: SignedCheckpoint | undefined;
  busy: boolean;
}

const MAX_CONFLICTS_PER_PUSH = 2;

export class WitnessPusher {
  readonly #o: WitnessPushOptions;
  readonly #slots: WitnessSlot[];
  #closed = false;

  constructor(o: WitnessPushOptions) {
    this.#o = o;
    this.#slots = o.witnesses.map((w) => ({ w, known: 0, target: undefined, busy: false }));
  }

  /** A new checkpoint of the own chain: every witness gets it (or a newer one). */
  offer(cp: SignedCheckpoint): void {
    for (const slot of this.#slots) {
      if (slot.target === undefined || cp.size > slot.target.size) slot.target = cp;
      if (!slot.busy) void this.#run(slot);
    }
  }

  close(): void {
    this.#closed = true;
  }

  async #run(slot: WitnessSlot): Promise<void> {
    slot.busy = true;
    try {
      while (!this.#closed && slot.target !== undefined && slot.target.size > slot.known) {
        const cp = slot.target;
        await this.#o.beforeAnnounce?.(cp);
        if (!(await this.#push(slot, cp))) break;
      }
    } catch (e) {
      this.#o.logger?.warn({ witness: slot.w.name, err: e }, `external witness ${slot.w.name}: ${(e as Error).message}`);
    } finally {
      slot.busy = false;
    }
  }

  /** One checkpoint to one witness; false when it is given up until the next block. */
  async #push(slot: WitnessSlot, cp: SignedCheckpoint): Promise<boolean> {
    for (let conflicts = 0; conflicts <= MAX_CONFLICTS_PER_PUSH; conflicts++) {
      const old = slot.known <= cp.size ? slot.known : 0;
      const proof = old > 0 && old < cp.size ? await consistencyProof(this.#o.chain, old, cp.size) : [];
      const body = `old ${old}\n${proof.map((p) => `${Buffer.from(p).toString('base64')}\n`).join('')}\n${cp.note}`;
      const res = await fetch(`${slot.w.url.replace(/\/+$/, '')}/add-checkpoint`, { method: 'POST', body, signal: AbortSignal.timeout(this.#o.timeoutMs) });
      const text = (await res.text()).slice(0, 4096);
      if (res.status === 200) {
        this.#accept(slot, cp, text);
        return true;
      }
      if (res.status === 409 && (res.headers.get('content-type') ?? '').startsWith('text/x.tlog.size') && /^(0|[1-9][0-9]{0,15})\n$/.test(text)) {
        const size = Number(text.trim());
        if (size > cp.size) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the witness has cosigned size ${size}, more than this chain's ${cp.size}`);
        if (size === slot.known) throw new OtiError('ERR_CHECKPOINT_MISMATCH', `the witness refuses size ${cp.size} as inconsistent with its size ${size}`);
        slot.known = size;
        continue;
      }
      throw new OtiError('ERR_ARGUMENT', `add-checkpoint answered ${res.status}: ${text.trim().slice(0, 200)}`, { status: res.status });
    }
    return false;
  }

  /** Checks the cosignature lines of a 200 answer against the configured witness key. */
  #accept(slot: WitnessSlot, cp: SignedCheckpoint, text: string): void {
    if (!/^(\u2014 [^\n]+\n)+$/.test(text)) throw new OtiError('ERR_CHECKPOINT_FORMAT', 'add-checkpoint answered 200 without signature lines');
    const cosigned = parseCheckpoint(`${cp.note}${text}`);
    const ts = verifyCosignature(cosigned, slot.w.name, slot.w.key, Math.floor((this.#o.now ?? Date.now)() / 1000));
    if (ts === undefined) throw new OtiError('ERR_CHECKPOINT_SIGNATURE', `no valid cosignature by ${slot.w.name} in the answer`);
    slot.known = cp.size;
    this.#o.onCosigned(slot.w.name, cp.size, ts, cosigned);
  }
}

/** witness.external from the configuration, keys decoded; ERR_CONFIG naming the key when one is wrong. */
export function externalWitnesses(w: { readonly external: readonly { url: string; name: string; key: string }[]; readonly externalQuorum: number }): ExternalWitness[] {
  const out = w.external.map((e, i) => {
    if (!/^[0-9a-f]{64}$/i.test(e.key)) throw new OtiError('ERR_CONFIG', `witness.external[${i}].key must be 64 hex digits (an Ed25519 public key)`, { key: `witness.external[${i}].key` });
    if (!/^[\x21-\x7e]+$/.test(e.name)) throw new OtiError('ERR_CONFIG', `witness.external[${i}].name must be printable ASCII without spaces`, { key: `witness.external[${i}].name` });
    return { url: e.url, name: e.name, key: new Uint8Array(Buffer.from(e.key, 'hex')) };
  });
  if (w.externalQuorum > out.length) throw new OtiError('ERR_CONFIG', `witness.externalQuorum is ${w.externalQuorum} but only ${out.length} external witnesses are configured`, { key: 'witness.externalQuorum' });
  return out;
}
