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
import { sha256, verify, type Signer } from '../../ledger/crypto.js';
import { withSignature, type SignedCheckpoint } from '../../ledger/checkpoint.js';
import { bytesEqual } from '../../ledger/base/bytes.js';
import { OtiError } from '../../ledger/base/errors.js';

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

/**
 * A range of the origin's own chain that reached the next stage of its lifecycle
 * (docs/MQTT.md §Event lifecycle): `replicated` once at least one other gateway holds it, has
 * verified it (lock signatures included) and cosigned a checkpoint covering it; `confirmed` once
 * the origin and quorum − 1 other gateways have signed such a checkpoint. Each stage is reached
 * once per entry; with quorum 2 one cosignature reaches both (replicated first).
 */
export interface CoverageEvent {
  readonly state: 'replicated' | 'confirmed';
  /** Entries [from, to) of the chain. */
  readonly from: number;
  readonly to: number;
  /** Other gateways that cosigned a checkpoint of size ≥ to (so far). */
  readonly peers: number;
  readonly quorum: number;
  /** Every gateway known so far to hold the whole range: for a confirmation the origin first, then the witnesses. */
  readonly cosigners: readonly string[];
}

export interface CoverageEvents {
  coverage: [CoverageEvent];
}

/**
 * Tracks, for the origin's own chain, the largest checkpoint size each witness has cosigned,
 * and emits one CoverageEvent per newly covered range and stage: memory is one number per
 * witness and two per chain, whatever the number of events (no per-event timers or sets).
 *
 * Replicated covers [0, the largest cosigned size); confirmed covers [0, the (quorum − 1)-th
 * largest), at least one witness: the origin's own signature counts towards the quorum.
 */
export class CoverageTracker extends EventEmitter<CoverageEvents> {
  readonly origin: string;
  readonly #quorum: () => number;
  readonly #externalQuorum: () => number;
  readonly #best = new Map<string, { size: number; time: number }>();
  /** Sizes cosigned by external witnesses (C2SP tlog-witness, gateway/sync/witness-push.ts). */
  readonly #external = new Map<string, { size: number; time: number }>();
  #replicated = 0;
  #confirmed = 0;

  /** `externalQuorum`: external witnesses that must also have cosigned for confirmation (k of witness.external). */
  constructor(originGateway: string, quorum: () => number, externalQuorum: () => number = () => 0) {
    super();
    this.origin = originGateway;
    this.#quorum = quorum;
    this.#externalQuorum = externalQuorum;
  }

  /** Records a verified cosignature by an external witness; confirmation then also needs k of them. */
  recordExternal(witness: string, size: number, timestampS: number): void {
    const prev = this.#external.get(witness);
    if (prev !== undefined && (prev.size >= size || prev.time > timestampS)) return;
    this.#external.set(witness, { size, time: timestampS });
    this.#confirm();
  }

  /** Sizes cosigned per witness (for status output). */
  witnesses(): { witness: string; size: number; time: number }[] {
    return [...this.#best].map(([witness, b]) => ({ witness, ...b }));
  }

  get replicatedSize(): number {
    return this.#replicated;
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
    const holding = (to: number): string[] => ranked.filter(([, b]) => b.size >= to).map(([w]) => w);
    const top = ranked[0]![1].size;
    if (top > this.#replicated) {
      const from = this.#replicated;
      this.#replicated = top;
      const cosigners = holding(top);
      this.emit('coverage', { state: 'replicated', from, to: top, peers: cosigners.length, quorum, cosigners });
    }
    this.#confirm();
  }

  /** Confirmed: origin + quorum − 1 site witnesses, and k external witnesses when k > 0. */
  #confirm(): void {
    const quorum = Math.max(1, this.#quorum());
    const ranked = [...this.#best].sort((a, b) => b[1].size - a[1].size);
    const needed = Math.max(1, quorum - 1);
    const siteTo = ranked.length >= needed ? ranked[needed - 1]![1].size : 0;
    const k = this.#externalQuorum();
    const external = [...this.#external].sort((a, b) => b[1].size - a[1].size);
    const externalTo = k <= 0 ? siteTo : external.length >= k ? external[k - 1]![1].size : 0;
    const to = Math.min(siteTo, externalTo);
    if (to > this.#confirmed) {
      const from = this.#confirmed;
      this.#confirmed = to;
      const cosigners = ranked.filter(([, b]) => b.size >= to).map(([w]) => w);
      const externals = k > 0 ? external.filter(([, b]) => b.size >= to).map(([w]) => w) : [];
      this.emit('coverage', { state: 'confirmed', from, to, peers: cosigners.length, quorum, cosigners: [this.origin, ...cosigners, ...externals] });
    }
  }
}
