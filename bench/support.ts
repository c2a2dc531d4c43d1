/** Shared helpers for the benchmarks: result files, percentiles, RSS sampling. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { generateKeyPair, Signer, type KeyPair } from '../ledger/crypto.js';
import { signStatement } from '../ledger/roster.js';
import { LedgerStore } from '../ledger/store.js';
import { Chain } from '../ledger/chain.js';
import type { SignaturePool } from '../ledger/sigpool.js';

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');

/** Writes one flat JSON object of figures to bench/results/NAME.json (units in the keys). */
export function writeResults(name: string, figures: Record<string, number | string | boolean>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(figures, null, 2)}\n`);
  return path;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function mb(bytes: number): number {
  return round(bytes / (1024 * 1024), 1);
}

/** Peak RSS of this process so far, in MB (getrusage max RSS). */
export function peakRssMb(): number {
  return round(process.resourceUsage().maxRSS / 1024, 1);
}

/** A fresh bench site and its gateway "gw" chain in `dir`, with a way to enrol locks. */
export interface BenchChain {
  readonly store: LedgerStore;
  readonly chain: Chain;
  /** Enrols lock `id` with a new key and returns the key. */
  enrolLock(id: string): Promise<KeyPair>;
  close(): Promise<void>;
}

export async function benchChain(dir: string, pool?: SignaturePool): Promise<BenchChain> {
  const siteKey = generateKeyPair();
  const site = new Signer(siteKey.seed);
  const gw = generateKeyPair();
  const store = await LedgerStore.open(dir);
  const genesis = signStatement(site, { site: 'bench', op: 'enroll', role: 'gateway', id: 'gw', key: gw.publicKey, time: Date.now() });
  const chain = await Chain.open({ store, trust: { siteId: 'bench', siteKeys: [siteKey.publicKey] }, gatewayId: 'gw', key: gw, genesis, ...(pool !== undefined ? { pool } : {}) });
  return {
    store,
    chain,
    async enrolLock(id) {
      const key = generateKeyPair();
      await chain.append({ kind: 'roster', signed: signStatement(site, { site: 'bench', op: 'enroll', role: 'lock', id, key: key.publicKey, time: Date.now() }) });
      return key;
    },
    async close() {
      await chain.close();
      await store.close();
    },
  };
}
