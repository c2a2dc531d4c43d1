/**
 * Witnessing: gateways cosign the peer checkpoints they have verified, in the C2SP
 * tlog-cosignature form (https://c2sp.org/tlog-cosignature, Ed25519 "cosignature/v1"), and the
 * origin gateway counts the cosignatures of its own chain to tell when events are replicated
 * and confirmed. docs/PROTOCOL.md §Sync (Witnessing).
 *
 *   key name  = the witness's own chain origin, oti/<site>/<witness>
 *   key ID    = SHA-256(key name || 0x0a || 0x04 || public key)[0:4]
 *   signature = timestamp (u64 big-endian, POSIX seconds) || Ed25519 over
 *               "cosignature/v1\n" || "time " <timestamp> "\n" || checkpoint text
 *   line      = "— " key name " " base64(key ID || signature)        (72-byte signature part)
 *
 * The "cosignature/v1" header separates these signatures from checkpoint signatures made with
 * the same gateway key (whose signed text starts with the origin line), and the key ID type
 * byte 0x04 separates their key IDs from checkpoint key hashes (type 0x01).
 */
import { EventEmitter } from 'node:events';
import { sha256, verify, type Signer } from '../ledger/crypto.js';
import { withSignature, type SignedCheckpoint } from '../ledger/checkpoint.js';
import { bytesEqual } from '../ledger/encoding.js';
import { OtiError } from '../ledger/errors.js';

const COSIG_TYPE = 0x04;

export function cosignatureKeyId(name: string, publicKey: Uint8Array): Uint8Array {
  return sha256(Buffer.from(`${name}\n`, 'utf8'), Uint8Array.of(COSIG_TYPE), publicKey).subarray(0, 4);
}

function cosignedMessage(cp: SignedCheckpoint, timestamp: number): Uint8Array {
  return Buffer.from(`cosignature/v1\ntime ${timestamp}\n${cp.text}`, 'utf8');
}

/** Adds this witness's cosignature line to a verified checkpoint; returns the new note. */
export function cosign(cp: SignedCheckpoint, signer: Signer, witnessName: string, timestampS: number): SignedCheckpoint {
  if (!Number.isSafeInteger(timestampS) || timestampS < 0) throw new OtiError('ERR_ARGUMENT', 'timestamp must be a non-negative integer of seconds', { argument: 'timestampS' });
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(timestampS));
  const sig = signer.sign(cosignedMessage(cp, timestampS));
  return withSignature(cp, { name: witnessName, keyHash: cosignatureKeyId(witnessName, signer.publicKey), signature: Buffer.concat([ts, sig]) });
}

/**
 * The timestamp of a valid cosignature by (witnessName, publicKey) on `cp`, or undefined when
 * the note carries none. Timestamps more than `maxFutureS` ahead of `nowS` are refused.
 */
export function verifyCosignature(cp: SignedCheckpoint, witnessName: string, publicKey: Uint8Array, nowS: number, maxFutureS = 600): number | undefined {
  const id = cosignatureKeyId(witnessName, publicKey);
  for (const s of cp.signatures) {
    if (s.name !== witnessName || !bytesEqual(s.keyHash, id) || s.signature.length !== 72) continue;
    const ts = Number(Buffer.from(s.signature.buffer, s.signature.byteOffset, 8).readBigUInt64BE(0));
    if (!Number.isSafeInteger(ts) || ts > nowS + maxFutureS) continue;
    if (verify(publicKey, cosignedMessage(cp, ts), s.signature.subarray(8))) return ts;
  }
  return undefined;
}

/** A range of the origin's own chain that reached a new level of replication. */
export interface CoverageEvent {
  /** replicated: held and cosigned by `peers` other gateways; confirmed: a quorum reached. */
  readonly state: 'replicated' | 'confirmed';
  /** Entries [from, to) of the chain. */
  readonly from: number;
  readonly to: number;
  /** Other gateways that cosigned a checkpoint of size ≥ to. */
  readonly peers: number;
  readonly quorum: number;
  /** The gateways counted, the origin first for a confirmation. */
  readonly cosigners: readonly string[];
}

export interface CoverageEvents {
  coverage: [CoverageEvent];
}

/**
 * Tracks, for the origin's own chain, the largest checkpoint size each witness has cosigned,
 * and emits one CoverageEvent per newly covered range and level: memory is one number per
 * witness and per level, whatever the number of events (no per-event timers or sets).
 *
 * Level k (k = 1..witnesses) covers [0, the k-th largest cosigned size). The origin's own
 * signature counts towards the quorum: entries are confirmed when origin + (quorum − 1)
 * witnesses have signed a checkpoint including them.
 */
export class CoverageTracker extends EventEmitter<CoverageEvents> {
  readonly origin: string;
  readonly #quorum: () => number;
  readonly #best = new Map<string, { size: number; time: number }>();
  /** covered[k-1]: size already announced for level k. */
  readonly #covered: number[] = [];
  #confirmed = 0;

  constructor(originGateway: string, quorum: () => number) {
    super();
    this.origin = originGateway;
    this.#quorum = quorum;
  }

  /** Sizes cosigned per witness (for status output). */
  witnesses(): { witness: string; size: number; time: number }[] {
    return [...this.#best].map(([witness, b]) => ({ witness, ...b }));
  }

  get confirmedSize(): number {
    return this.#confirmed;
  }

  /** Records a verified cosignature; older or smaller ones than already seen change nothing. */
  record(witness: string, size: number, timestampS: number): void {
    const prev = this.#best.get(witness);
    if (prev !== undefined && (prev.size >= size || prev.time > timestampS)) return;
    this.#best.set(witness, { size, time: timestampS });
    const ranked = [...this.#best].sort((a, b) => b[1].size - a[1].size);
    const quorum = Math.max(1, this.#quorum());
    for (let k = 1; k <= ranked.length; k++) {
      const to = ranked[k - 1]![1].size;
      const from = this.#covered[k - 1] ?? 0;
      if (to <= from) continue;
      this.#covered[k - 1] = to;
      const cosigners = ranked.slice(0, k).map(([w]) => w);
      const confirmed = k + 1 >= quorum;
      if (confirmed && to > this.#confirmed) {
        const start = Math.max(from, this.#confirmed);
        this.#confirmed = to;
        this.emit('coverage', { state: 'confirmed', from: start, to, peers: k, quorum, cosigners: [this.origin, ...cosigners] });
      } else if (!confirmed) {
        this.emit('coverage', { state: 'replicated', from, to, peers: k, quorum, cosigners });
      }
    }
  }
}
