/**
 * bench:ingest's real gateway process: started with PTY_LOCKS locks on kernel ptys, their acks
 * timed, its memory sampled from /proc.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { generateKeyPair, Signer } from '../../ledger/crypto.js';
import { signStatement } from '../../ledger/roster.js';
import { LedgerStore } from '../../ledger/store.js';
import { Chain } from '../../ledger/chain.js';
import { SimLock } from '../../drivers/simlock.js';
import { SerialSimLink } from '../../drivers/simlink.js';
import { ptyPair, type PtyPair } from '../../drivers/pty.js';
import { loadOrCreateIdentity } from '../../gateway/config/identity.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { followGateway, freePort, writeGatewayConfig, GATEWAY_NODE_FLAGS } from '../../test/support/gateway-process.js';
import { threadCpu } from '../cpu-stages.js';
import { round } from '../support.js';
import { PTY_LOCKS, SECONDS, FLOOD_SECONDS, FLOOD_WARMUP_SECONDS, EXTRA_FLAGS, GATEWAY_WRAPPER, SNAPSHOT_DIR, ALLOC_PROFILE, GATEWAY_MAIN, ackTraceFor } from './settings.js';

/** How the real gateway process runs: on every core, or pinned to the first `cpus` (taskset). */
export interface ProcessOptions {
  /** Pinned to cores 0..cpus-1 with `taskset`; undefined = every core. */
  readonly cpus?: number;
  /** Sampled with `--cpu-prof` into this folder (written when the gateway exits). */
  readonly profileDir?: string;
  /** Other configuration sections (broker settings for the flood). */
  readonly more?: Record<string, unknown>;
  /** Timestamps on the ack path (bench/ack-trace.ts) written to this file at the gateway's exit. */
  readonly traceFile?: string;
  /** The gateway's main.js: this build's (default) or another's (BENCH_COMPARE). */
  readonly main?: string;
}

/** The real gateway process with PTY_LOCKS locks on ptys, their acks timed, its RSS sampled. */
export interface ProcessRig {
  readonly brokerPort: number;
  readonly apiPort: number;
  readonly pid: number;
  readonly locks: SimLock[];
  /** Ack latency of every event, by the time (performance.now()) it was recorded; `id` is `<lock>:<ctr>`, `abs` the record time in ms since the epoch. */
  readonly acks: { at: number; ms: number; id: string; abs: number }[];
  /** Peak VmRSS and its anonymous part so far, MB. */
  readonly peak: { rss: number; anon: number };
  /** Stops the locks' load, waits for their acks (up to 30 s), stops everything; resolves to the events never acked and the gateway's threads' CPU ms just before it was stopped. */
  stop(): Promise<{ unacked: number; threads: ReturnType<typeof threadCpu> }>;
}

export async function processRig(dir: string, o: ProcessOptions = {}): Promise<ProcessRig> {
  const more = o.more ?? {};
  const dataDir = join(dir, 'gw');
  const id = await loadOrCreateIdentity(dataDir);
  const site = new Signer((await readKeyFile(join(dataDir, 'dev-site.key'))).seed);
  const keys = Array.from({ length: PTY_LOCKS }, () => generateKeyPair());
  {
    const store = await LedgerStore.open(join(dataDir, 'ledger'));
    const chain = await Chain.open({ store, trust: id.trust, gatewayId: id.gatewayId, key: id.key, genesis: id.enrolment });
    for (const [i, k] of keys.entries()) await chain.append({ kind: 'roster', signed: signStatement(site, { site: id.trust.siteId, op: 'enroll', role: 'lock', id: `pty-lock-${i}`, key: k.publicKey, time: Date.now() }) });
    await chain.close();
    await store.close();
  }
  const ptys: PtyPair[] = [];
  for (let i = 0; i < PTY_LOCKS; i++) ptys.push(await ptyPair(dir, `pty-${i}`));
  const config = join(dir, 'gateway.yaml');
  const apiPort = await freePort();
  const brokerPort = await freePort();
  const { broker: brokerMore, ...rest } = more;
  const broker = { host: '127.0.0.1', port: brokerPort, ...(brokerMore as Record<string, unknown> | undefined) };
  await writeGatewayConfig(config, {
    dataDir,
    broker,
    api: { port: apiPort },
    serialPorts: ptys.map((p) => p.gateway),
    portSettings: { baudRate: 921600 },
    more: { log: { level: 'warn' }, ...rest },
  });
  // The node options of npm start and the systemd unit, and the bench's own additions.
  const nodeArgs = [
    ...GATEWAY_NODE_FLAGS,
    ...EXTRA_FLAGS,
    ...(SNAPSHOT_DIR !== undefined ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOT_DIR}`] : []),
    ...(o.profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : []),
    ...(o.traceFile !== undefined || ALLOC_PROFILE !== undefined ? ['--import', ackTraceFor(o.main ?? GATEWAY_MAIN)] : []),
    o.main ?? GATEWAY_MAIN,
    '--config',
    config,
  ];
  const cmd = [...(o.cpus !== undefined ? ['taskset', '-c', `0-${o.cpus - 1}`] : []), ...GATEWAY_WRAPPER, process.execPath, ...nodeArgs];
  // taskset execs node: the child's pid is the gateway's.
  const env = { ...process.env, ...(o.traceFile !== undefined ? { OTI_ACK_TRACE: o.traceFile } : {}), ...(ALLOC_PROFILE !== undefined && o.profileDir === undefined ? { OTI_ALLOC_PROFILE: `${ALLOC_PROFILE}.${Date.now()}.heapprofile` } : {}) };
  // The locks sign their events ahead, as the in-process phases' locks do: signing (and laying out
  // each event and its hash) is the locks' work, done on the lock, not on the gateway's cores.
  // Here it ran on the same cores as the gateway it measures (docs/DECISIONS.md §Issue 22, ack
  // p99: the load generator's share of the two cores). Done before the gateway starts (about
  // 1.3 s for 17,000 events), so that the gateway's start-up and the load begin as far apart as
  // before. Enough for the longest phase (the flood's warm-up and its two windows) at 1,000
  // events/s; after them a lock signs as it records.
  const locks = keys.map((k, i) => new SimLock({ id: `pty-lock-${i}`, seed: k.seed, resendMs: 5000, rememberAcks: false }));
  const ahead = Math.ceil((Math.max(SECONDS, FLOOD_WARMUP_SECONDS + 2 * FLOOD_SECONDS) + 5) * (1000 / PTY_LOCKS));
  for (const l of locks) l.prepare(ahead);
  const gw = followGateway(spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env }));
  const pid = gw.proc.pid as number;
  /** VmRSS and its anonymous part (heap, stacks, LevelDB buffers; the rest is mapped files), MB. */
  const rssOf = (): { rss: number; anon: number } => {
    try {
      const st = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? 0) / 1024;
      return { rss: kb('VmRSS'), anon: kb('RssAnon') };
    } catch {
      return { rss: 0, anon: 0 };
    }
  };
  // The gateway logs at warn: wait until every pty is open on its side instead of for a log line.
  const links = locks.map((l, i) => new SerialSimLink(l, { path: (ptys[i] as PtyPair).lock, baudRate: 921600 }));
  for (const l of links) l.start();
  const ready = Date.now() + 30_000;
  while (Date.now() < ready) {
    locks[0]?.record();
    await sleep(200);
    if (locks.every((l) => l.connected) && (locks[0]?.ackCount ?? 0) > 0) break;
  }
  const acks: { at: number; ms: number; id: string; abs: number }[] = [];
  for (const l of locks) {
    const at = new Map<number, number>();
    const orig = l.record.bind(l);
    l.record = (type) => {
      at.set(l.counter, performance.now());
      return orig(type);
    };
    l.on('ack', (ctr) => {
      const t = at.get(ctr);
      if (t !== undefined) {
        acks.push({ at: t, ms: performance.now() - t, id: `${l.id}:${ctr}`, abs: performance.timeOrigin + t });
        at.delete(ctr);
      }
    });
  }
  const peak = { rss: 0, anon: 0 };
  const sampler = setInterval(() => {
    const r = rssOf();
    peak.rss = Math.max(peak.rss, r.rss);
    peak.anon = Math.max(peak.anon, r.anon);
  }, 100);
  for (const l of locks) l.startAuto(1000 / PTY_LOCKS);
  const stop = async (): Promise<{ unacked: number; threads: ReturnType<typeof threadCpu> }> => {
    for (const l of locks) l.stopAuto();
    const deadline = Date.now() + 30_000;
    while (locks.some((l) => l.pending > 0) && Date.now() < deadline) await sleep(20);
    clearInterval(sampler);
    const unacked = locks.reduce((n, l) => n + l.pending, 0);
    const threads = threadCpu(pid);
    gw.proc.kill('SIGTERM');
    await gw.exited;
    // What the gateway printed besides its log lines (node's --trace-gc, for one).
    const keep = process.env['BENCH_GATEWAY_STDOUT'];
    if (keep !== undefined) appendFileSync(keep, gw.logs.filter((l) => l.level === 30 && typeof l.msg === 'string' && !('time' in l)).map((l) => `${l.msg}\n`).join(''));
    for (const l of locks) l.close();
    await Promise.all(links.map((l) => l.close()));
    await Promise.all(ptys.map((p) => p.kill()));
    return { unacked, threads };
  };
  return { brokerPort, apiPort, pid, locks, acks, peak, stop };
}

/**
 * Where a process's resident memory is, from /proc/PID/smaps, MB: the node binary, LevelDB's
 * memory-mapped tables, other files (shared libraries, native addons), the main malloc heap,
 * and other anonymous memory (V8's heaps, other malloc arenas, thread stacks).
 */
export function rssParts(pid: number): Record<string, number> {
  const parts: Record<string, number> = { node_binary: 0, leveldb_tables: 0, other_files: 0, malloc_heap: 0, anonymous: 0 };
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return {};
  }
  let kind = 'anonymous';
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head !== null) {
      const path = head[1] ?? '';
      kind = path === '[heap]' ? 'malloc_heap' : path.endsWith('.ldb') ? 'leveldb_tables' : path === process.execPath || /\/node$/.test(path) ? 'node_binary' : path.startsWith('/') ? 'other_files' : 'anonymous';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null) parts[kind] = (parts[kind] ?? 0) + Number(rss[1]) / 1024;
  }
  for (const k of Object.keys(parts)) parts[k] = round(parts[k] as number, 1);
  return parts;
}