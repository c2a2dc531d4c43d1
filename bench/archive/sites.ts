/**
 * The simulated sites of bench:archive, kept on disk between the phases: each site's uplink
 * messages (gateway/sync/uplink.ts makes the same) in one file of length-prefixed records, so
 * that the archive's process reads one site at a time and its memory is the archive's own.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, Signer, fromHex, toHex } from '../../ledger/crypto.js';
import { signStatement, type SiteTrust } from '../../ledger/roster.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent, EVENT_TYPES } from '../../ledger/lockevent.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { encodeRange } from '../../gateway/sync/wire.js';

export const T0 = 1_780_000_000_000;

/** A site as the phases pass it on: where its messages are, and what the archive trusts. */
export interface SiteFile {
  readonly origin: string;
  readonly siteId: string;
  /** The site's authority keys, hex. */
  readonly siteKeys: readonly string[];
  readonly file: string;
  readonly entries: number;
  readonly blocks: number;
}

export function trustOf(s: SiteFile): SiteTrust {
  return { siteId: s.siteId, siteKeys: s.siteKeys.map((k) => fromHex('site key', k, 32)) };
}

/**
 * Site `i`: a real gateway chain in LevelDB (its own site key, gateway key and `locks` locks)
 * holding `events` lock-signed events in blocks of up to 256 entries as group commit makes them,
 * read back as one uplink message per block and written to `dir/site-i.msgs`.
 */
export async function buildSite(i: number, dir: string, events: number, locks: number): Promise<SiteFile> {
  const siteId = `site-${i}`;
  const siteKey = generateKeyPair();
  const site = new Signer(siteKey.seed);
  const gw = generateKeyPair();
  const trust = { siteId, siteKeys: [siteKey.publicKey] };
  const store = await LedgerStore.open(join(dir, siteId));
  const genesis = signStatement(site, { site: siteId, op: 'enroll', role: 'gateway', id: 'gw', key: gw.publicKey, time: T0 });
  const chain = await Chain.open({ store, trust, gatewayId: 'gw', key: gw, genesis, maxBlockEntries: 256 });
  const lockList = Array.from({ length: locks }, (_, k) => ({ id: `lock-${i}-${k}`, key: generateKeyPair(), ctr: 0 }));
  for (const l of lockList) await chain.append({ kind: 'roster', signed: signStatement(site, { site: siteId, op: 'enroll', role: 'lock', id: l.id, key: l.key.publicKey, time: T0 }) });
  const signers = lockList.map((l) => new Signer(l.key.seed));
  const pending: Promise<unknown>[] = [];
  for (let e = 0; e < events; e++) {
    const k = e % locks;
    const l = lockList[k]!;
    l.ctr++;
    const cose = coseSign1(signers[k]!, encodeLockEvent({ lock: l.id, ctr: l.ctr, time: T0 + e * 1000, type: EVENT_TYPES[e % 2]! }));
    pending.push(chain.append({ kind: 'lock-event', time: T0 + e * 1000, cose }, { preverified: true }));
    if (pending.length >= 512) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await chain.flush();
  const records: Buffer[] = [];
  for (let n = 0; n <= chain.head.n; n++) {
    const b = await chain.block(n);
    const entries = await chain.entryRange(b.header.first, b.header.first + b.header.count);
    const msg = encodeRange({ id: n, chain: chain.origin, first: b.header.first, entries, blocks: [{ h: b.headerBytes, cp: b.checkpoint.note }], end: true });
    const len = Buffer.alloc(4);
    len.writeUInt32LE(msg.length);
    records.push(len, Buffer.from(msg));
  }
  const file = join(dir, `${siteId}.msgs`);
  await writeFile(file, Buffer.concat(records));
  const out = { origin: chain.origin, siteId, siteKeys: [toHex(siteKey.publicKey)], file, entries: chain.size, blocks: chain.head.n + 1 };
  await chain.close();
  await store.close();
  return out;
}

/** A site's uplink messages, in order. */
export async function readMessages(s: SiteFile): Promise<Buffer[]> {
  const all = await readFile(s.file);
  const out: Buffer[] = [];
  for (let o = 0; o < all.length; ) {
    const n = all.readUInt32LE(o);
    out.push(all.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  return out;
}
