/**
 * Child process for the crash test (test/integration/crash.test.ts): appends under load until it
 * is killed.
 *
 *   node dist/test/support/crash-child.js <db path> <keys file>
 *
 * The keys file (CrashKeys, JSON) holds the site's public key, the gateway's seed and enrolment,
 * and the locks' seeds and enrolments, so that every run works on the same site and gateway.
 * The child opens the chain (with genesis when new), enrols the locks that are not enrolled
 * yet, then keeps about OTI_CRASH_INFLIGHT (default 200) appends in flight: lock-signed events
 * from every lock, each lock's counter continuing from the chain's last counter, with a gap or
 * health entry mixed in now and then. After each append promise resolves it writes one line to
 * stdout, synchronously (fs.writeSync on fd 1, no stream buffering in between):
 *
 *   ACK <lock> <ctr> <index> <hex leaf hash>      lock events
 *   ACKX <kind> <index> <hex leaf hash>           other entries (found by their leaf hash)
 *
 * A line is written only after the promise has resolved, so every line the parent reads names an
 * append the chain reported durable. Lines of resolved appends may be lost to the kill; that is
 * fine. On any failure (rejected append, chain error) it writes `FAIL ...` to stderr and exits 2;
 * if its stdout is closed (the parent is gone) or it is not killed within OTI_CRASH_MAX_MS
 * (default 60 s), it exits too.
 */
import { writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Chain, type AppendResult } from '../../ledger/chain.js';
import { LedgerStore } from '../../ledger/store.js';
import { fromHex, keyPairFromSeed, Signer, toHex } from '../../ledger/crypto.js';
import { decodeSigned, type SignedStatement } from '../../ledger/roster.js';
import type { EntryInput } from '../../ledger/entry.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { signedEvent, type TestLock } from './site.js';

export interface CrashKeys {
  readonly siteId: string;
  readonly sitePublicKey: string;
  readonly gatewayId: string;
  readonly gatewaySeed: string;
  /** encodeSigned() of the gateway's enrolment, hex. */
  readonly gatewayStatement: string;
  readonly locks: readonly { readonly id: string; readonly seed: string; readonly statement: string }[];
}

export const CRASH_SEAL_DELAY_MS = 2;

function fail(what: string, e: unknown): never {
  const code = isOtiError(e) ? e.code : 'UNCODED';
  const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
  writeSync(2, `FAIL ${what}: ${code}: ${msg}\n`);
  process.exit(2);
}

/** Writes all of `s` to fd 1, retrying short writes and EAGAIN (if fd 1 is non-blocking). */
function writeAll(s: string): void {
  let buf = Buffer.from(s, 'utf8');
  while (buf.length > 0) {
    try {
      const n = writeSync(1, buf);
      buf = buf.subarray(n);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // The parent is gone: nobody will kill us, so stop.
      if (code === 'EPIPE') process.exit(3);
      if (code !== 'EAGAIN') throw e;
    }
  }
}

// ACK lines of promises resolved in the same microtask run (one block) go out in one write.
let outBuf = '';
let flushQueued = false;
function ack(line: string): void {
  outBuf += line;
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(() => {
      flushQueued = false;
      const s = outBuf;
      outBuf = '';
      writeAll(s);
    });
  }
}

async function main(): Promise<void> {
  const [dbPath, keysPath] = process.argv.slice(2);
  if (dbPath === undefined || keysPath === undefined) throw new Error('usage: crash-child <db path> <keys file>');
  const inFlightTarget = Number(process.env['OTI_CRASH_INFLIGHT'] ?? 200);
  // A watchdog, so that a child whose parent died without killing it does not run forever.
  const maxMs = Number(process.env['OTI_CRASH_MAX_MS'] ?? 60_000);
  setTimeout(() => {
    writeSync(2, `FAIL watchdog: not killed within ${maxMs} ms\n`);
    process.exit(4);
  }, maxMs).unref();
  const keys = JSON.parse(await readFile(keysPath, 'utf8')) as CrashKeys;
  const trust = { siteId: keys.siteId, siteKeys: [fromHex('sitePublicKey', keys.sitePublicKey, 32)] };
  const genesis: SignedStatement = decodeSigned(fromHex('gatewayStatement', keys.gatewayStatement));

  const store = await LedgerStore.open(dbPath);
  const chain = await Chain.open({ store, trust, gatewayId: keys.gatewayId, key: keyPairFromSeed(fromHex('gatewaySeed', keys.gatewaySeed, 32)), genesis, sealDelayMs: CRASH_SEAL_DELAY_MS });
  chain.on('error', (e) => fail('chain error', e));

  const onResult = (r: AppendResult): void => {
    const body = r.entry.body;
    if (body.kind === 'lock-event') ack(`ACK ${body.event.lock} ${body.event.ctr} ${r.index} ${toHex(r.leafHash)}\n`);
    else ack(`ACKX ${body.kind} ${r.index} ${toHex(r.leafHash)}\n`);
  };

  // Enrol the locks this chain does not know yet.
  const locks: TestLock[] = [];
  const enrolments: Promise<void>[] = [];
  for (const l of keys.locks) {
    const statement = decodeSigned(fromHex('statement', l.statement));
    const key = keyPairFromSeed(fromHex('seed', l.seed, 32));
    locks.push({ id: l.id, key, signer: new Signer(key.seed), statement, ctr: 0 });
    if (chain.roster.get('lock', l.id) === undefined) {
      enrolments.push(chain.append({ kind: 'roster', signed: statement }).then(onResult, (e: unknown) => fail(`enrolling ${l.id}`, e)));
    }
  }
  await Promise.all(enrolments);
  for (const lock of locks) lock.ctr = await chain.lastCounter(lock.id);

  // Keep `inFlightTarget` appends in flight, round-robin over the locks.
  let inFlight = 0;
  let seq = 0;
  const next = (): EntryInput => {
    seq++;
    const lock = locks[seq % locks.length]!;
    if (seq % 37 === 0) return { kind: 'health', source: 'crash-child', status: 'ok', detail: `pid ${process.pid} seq ${seq}` };
    if (seq % 53 === 0) return { kind: 'gap', source: `crash-child-${process.pid}`, start: seq, end: seq + 1, reason: 'crash test' };
    if (seq % 71 === 0) return { kind: 'gap', lock: lock.id, from: lock.ctr + 1, to: lock.ctr + 1 };
    return { kind: 'lock-event', cose: signedEvent(lock, seq % 2 === 0 ? 'unlocked' : 'locked') };
  };
  const pump = (): void => {
    while (inFlight < inFlightTarget) {
      inFlight++;
      const input = next();
      chain.append(input).then(
        (r) => {
          onResult(r);
          inFlight--;
          // Refill after the current block's resolutions have run, so a block's ACKs stay together.
          setImmediate(pump);
        },
        (e: unknown) => fail(`append ${input.kind}`, e),
      );
    }
  };
  pump();
  // Runs until killed: the pending timers and LevelDB writes keep the process alive.
}

main().catch((e: unknown) => fail('startup', e));
