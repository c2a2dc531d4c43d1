/**
 * The ledger benchmark's site, shared by its phases (bench/ledger.ts, bench/ledger/raw.ts): keys
 * drawn once per run and written to a set-up file, so that every phase, each in a process of its
 * own, signs and checks the same chain.
 */
import { keyPairFromSeed, Signer, fromHex, type KeyPair } from '../../ledger/crypto.js';
import { signStatement, type SignedStatement, type SiteTrust } from '../../ledger/roster.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';

export interface Setup {
  dir: string;
  siteSeed: string;
  gatewaySeed: string;
  lockSeeds: string[];
}

export function siteFrom(setup: Setup): { trust: SiteTrust; site: Signer; gateway: KeyPair; genesis: SignedStatement; locks: { id: string; signer: Signer; statement: SignedStatement }[] } {
  const siteKey = keyPairFromSeed(fromHex('site', setup.siteSeed));
  const site = new Signer(siteKey.seed);
  const gateway = keyPairFromSeed(fromHex('gw', setup.gatewaySeed));
  const t0 = 1_700_000_000_000;
  const genesis = signStatement(site, { site: 'bench', op: 'enroll', role: 'gateway', id: 'gw-1', key: gateway.publicKey, time: t0 });
  const locks = setup.lockSeeds.map((s, i) => {
    const kp = keyPairFromSeed(fromHex('lock', s));
    const id = `lock-${i}`;
    return { id, signer: new Signer(kp.seed), statement: signStatement(site, { site: 'bench', op: 'enroll', role: 'lock', id, key: kp.publicKey, time: t0 }) };
  });
  return { trust: { siteId: 'bench', siteKeys: [siteKey.publicKey] }, site, gateway, genesis, locks };
}

/** Lock events, round robin over the locks, counters continuing from `start`. */
export function makeEvents(locks: { id: string; signer: Signer }[], from: number, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let k = from; k < from + count; k++) {
    const lock = locks[k % locks.length]!;
    const ctr = Math.floor(k / locks.length) + 1;
    out.push(coseSign1(lock.signer, encodeLockEvent({ lock: lock.id, ctr, time: 1_700_000_000_000 + k, type: k % 2 === 0 ? 'unlocked' : 'locked', cred: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) })));
  }
  return out;
}

/** CPU time of this process so far (every thread), in µs. */
export function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}
