/**
 * Day-to-day commands: `oti status`, `oti events tail`, `oti verify`, `oti receipt`,
 * `oti receipt verify`, `oti ports`.
 *
 * API contract used here (gateway/api/server.ts, docs/API.md): GET /status → JSON object; GET /events
 * with query `after` (cursor), `lock`, `limit` → { "items": [...], "next": index | null };
 * GET /receipts/<id>
 * with Accept: application/cbor → the receipt bytes (ledger/receipt.ts).
 */
import { terminalQr } from './qr.js';
import { writeFile, readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { availableParallelism } from 'node:os';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import { toHex } from '../ledger/crypto.js';
import { verifyReceipt, RECEIPT_MAX_BYTES, type VerifiedReceipt } from '../ledger/receipt.js';
import { receiptBytes, TLOG_PROOF_MAX_BYTES } from '../ledger/tlog-proof.js';
import { verifyChain, type VerifyReport } from '../ledger/verify.js';
import { SignaturePool } from '../ledger/sigpool.js';
import { listPorts } from '../drivers/serial.js';
import { ApiClient } from './api-client.js';
import { API_OPTIONS, EXIT_FAILURE, flag, int, str, usage, type Command } from './command.js';
import { readDataIdentity, withLedger } from './ledger-access.js';
import { readSiteTrust } from './site.js';
import { evidenceLine, readEvidence } from './evidence.js';

/** `key: value` lines for a JSON value, nested keys joined with dots. */
function describeJson(v: unknown, prefix = ''): string[] {
  if (v === null || typeof v !== 'object') return [`${prefix}: ${String(v)}`];
  const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v as Record<string, unknown>);
  if (entries.length === 0) return [`${prefix}: ${Array.isArray(v) ? '[]' : '{}'}`];
  return entries.flatMap(([k, x]) => describeJson(x, prefix === '' ? k : `${prefix}.${k}`));
}

/** One line per peer gateway and the site's compromised gateways, from GET /status's peers and sync. */
function syncSummary(s: unknown): string[] {
  const o = (s ?? {}) as { peers?: unknown; sync?: { compromised?: unknown; evidence?: unknown } };
  const out: string[] = [];
  const compromised = Array.isArray(o.sync?.compromised) ? (o.sync.compromised as unknown[]).map(String) : [];
  if (compromised.length > 0) out.push(`  COMPROMISED (refused for equivocation, see oti evidence list): ${compromised.join(', ')}`);
  for (const p of Array.isArray(o.peers) ? (o.peers as Record<string, unknown>[]) : []) {
    const contact = typeof p.lastContact === 'number' ? `last contact ${new Date(p.lastContact).toISOString()}` : 'no contact since start';
    const r = p.refusal as { code?: unknown; count?: unknown } | null | undefined;
    const refusal = r !== null && r !== undefined ? `, ${String(r.count)} refused (last ${String(r.code)})` : '';
    const ev = typeof p.evidence === 'string' ? `, evidence ${p.evidence.slice(0, 16)}` : '';
    out.push(`  peer ${String(p.gateway)}: ${String(p.state)}, ${String(p.size)} entries stored, lag ${String(p.lag)}, ${contact}${refusal}${ev}`);
  }
  return out;
}

const status: Command = {
  name: 'status',
  summary: 'Show a running gateway’s state: drivers, chain heights, queue, peers.',
  options: { ...API_OPTIONS },
  examples: ['oti status', 'oti status --api http://10.0.0.5:8433 --token $OTI_API_TOKEN --json'],
  async run(p, term) {
    const api = ApiClient.from(p, term);
    const s = await api.json('/status');
    return { json: s, text: [`gateway at ${api.base}`, ...syncSummary(s), ...describeJson(s).map((l) => `  ${l}`)] };
  },
};

/** One page of GET /events (docs/API.md §GET /events): `next` null means the end of the chain for now. */
interface EventsPage {
  items: Record<string, unknown>[];
  next: number | null;
}

function eventLine(e: Record<string, unknown>): string {
  const t = typeof e.time === 'number' ? new Date(e.time).toISOString() : '';
  const what = ['id', 'lock', 'ctr', 'type', 'kind', 'provenance'].filter((k) => e[k] !== undefined).map((k) => `${k}=${String(e[k])}`);
  return `${t} ${what.join(' ')}`.trim();
}

const eventsTail: Command = {
  name: 'events tail',
  summary: 'Print events from a running gateway; with --follow, keep printing new ones as they come.',
  options: {
    lock: { type: 'string', value: 'LOCK', help: 'only this lock’s events' },
    after: { type: 'string', value: 'CURSOR', help: 'start after this cursor (as printed with --json)' },
    limit: { type: 'string', value: 'N', help: 'events per request (default 50)' },
    follow: { type: 'boolean', short: 'f', help: 'keep polling for new events (Ctrl+C to stop); --json prints one JSON object per line' },
    interval: { type: 'string', value: 'MS', help: 'with --follow: poll interval (default 1000)' },
    ...API_OPTIONS,
  },
  examples: ['oti events tail --lock front-door', 'oti events tail --follow', 'oti events tail --follow --json | jq .type'],
  async run(p, term) {
    const api = ApiClient.from(p, term);
    const limit = int(p, 'limit', 50, 1, 1000);
    const interval = int(p, 'interval', 1000, 100, 600_000);
    let cursor: unknown = str(p, 'after');
    const page = async (): Promise<EventsPage> => {
      const q = new URLSearchParams({ limit: String(limit) });
      if (cursor !== undefined && cursor !== null) q.set('after', String(cursor));
      const lock = str(p, 'lock');
      if (lock !== undefined) q.set('lock', lock);
      const v = (await api.json(`/events?${q.toString()}`)) as Partial<EventsPage>;
      if (!Array.isArray(v.items) || (v.next !== null && typeof v.next !== 'number')) throw new OtiError('ERR_API', 'GET /events: the answer has no items list and next cursor');
      return { items: v.items, next: v.next };
    };
    if (!flag(p, 'follow')) {
      const r = await page();
      return { json: r, text: r.items.length === 0 ? ['no events'] : r.items.map(eventLine) };
    }
    for (;;) {
      const r = await page();
      for (const e of r.items) process.stdout.write(`${p.json ? JSON.stringify(e) : eventLine(e)}\n`);
      // next: null is the end of the chain for now; read on after the last item printed.
      const last = r.items.at(-1)?.index;
      if (r.next !== null) cursor = r.next;
      else if (typeof last === 'number') cursor = last;
      if (r.next === null) await sleep(interval);
    }
  },
};

const verify: Command = {
  name: 'verify',
  summary: 'Verify every chain in a gateway data folder (or one with --chain); exit 0 only if all verify.',
  details: [
    'Checks every block: entries, Merkle roots, links, checkpoint signatures, the roster and every lock signature, against the site keys in the data folder’s site.json (or --site-keys).',
    'LevelDB allows one process at a time: while the gateway runs, a copy of the ledger is verified (up to the last complete block when the copy was taken). Stop the gateway to verify the live files.',
    'A chain the gateway refuses after equivocation (two inconsistent checkpoints signed with its gateway’s key) is REFUSED, not ok, even when its blocks verify; the stored evidence is listed (oti evidence list, docs/SYNC.md §Equivocation).',
  ],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder' },
    chain: { type: 'string', value: 'ORIGIN', help: 'only this chain, e.g. oti/acme-hq/gw-lobby' },
    'site-keys': { type: 'string', value: 'FILE|HEX', help: 'trust these site keys instead of the data folder’s' },
  },
  examples: ['oti verify --data /var/lib/oti-gateway', 'oti verify --data ./data --chain oti/acme-hq/gw-hall --json'],
  async run(p, term) {
    const data = str(p, 'data', true);
    const id = await readDataIdentity(data);
    const keys = str(p, 'site-keys');
    const trust = keys !== undefined ? await readSiteTrust(keys, id.trust.siteId) : id.trust;
    const only = str(p, 'chain');
    return withLedger(data, { copyIfLocked: true }, async ({ store, copy }) => {
      const chains = (await store.listChains()).filter((c) => only === undefined || c.origin === only);
      if (only !== undefined && chains.length === 0) throw new OtiError('ERR_NOT_FOUND', `no chain ${only} in ${data}`);
      // The workers and this thread (idle but for reading and hashing) share the checks: one
      // worker fewer than cores, one V8 isolate less to hold (docs/DECISIONS.md §Memory). This
      // thread takes a batch only when each worker has two waiting behind the one it runs, so
      // that none runs dry while this thread checks its batch and packs the next.
      const pool = new SignaturePool(availableParallelism() - 1, { callerShare: true, callerAfter: 3 });
      const results: { origin: string; role: string; ok: boolean; report?: Omit<VerifyReport, 'root' | 'checkpoint'> & { root: string; rosterCommitted: boolean }; error?: { code: string; message: string }; refused?: { evidence: string; reporter: string | null } }[] = [];
      const evidence = await readEvidence(store, trust);
      try {
        for (const c of chains) {
          const cs = await store.chain(c.origin, c.role);
          const bar = term.progress(c.origin);
          try {
            const r = await verifyChain(cs, { trust, pool, onProgress: (pr) => bar.update(pr.size, cs.head.size, `${pr.lockSignatures} signatures`) });
            const report = { origin: r.origin, blocks: r.blocks, entries: r.entries, size: r.size, lockSignatures: r.lockSignatures, unsignedEvents: r.unsignedEvents, root: toHex(r.root), rosterCommitted: r.checkpoint?.roster !== undefined };
            // Its blocks verify, but its gateway's key signed another, inconsistent tree too: not ok.
            const ev = evidence.find((e) => e.origin === c.origin && e.refused);
            if (ev !== undefined) results.push({ origin: c.origin, role: c.role, ok: false, report, error: { code: 'ERR_EQUIVOCATION', message: `its blocks verify, but the site refuses it: its gateway's key signed an inconsistent checkpoint too (evidence ${ev.id.slice(0, 16)})` }, refused: { evidence: ev.id, reporter: ev.reporter } });
            else results.push({ origin: c.origin, role: c.role, ok: true, report });
          } catch (e) {
            if (!isOtiError(e)) throw e;
            results.push({ origin: c.origin, role: c.role, ok: false, error: { code: e.code, message: e.message } });
          } finally {
            bar.end();
          }
        }
      } finally {
        await pool.close();
      }
      const ok = results.every((r) => r.ok);
      const text = [
        ...(copy ? [term.yellow('the gateway is running: verified a copy of the ledger')] : []),
        ...results.map((r) =>
          r.ok
            ? `${term.green('ok')}    ${r.origin} (${r.role}): ${r.report?.entries} entries, ${r.report?.blocks} blocks, ${r.report?.lockSignatures} lock signatures${r.report?.rosterCommitted === true ? ', roster committed' : ', roster not committed (checkpoints before protocol 1.1)'}`
            : `${term.red(r.refused !== undefined ? 'REFUSED' : 'FAIL')}  ${r.origin} (${r.role}): ${r.error?.message} [${r.error?.code}]`,
        ),
        ...evidence.map(evidenceLine),
        results.length === 0 ? 'no chains in this data folder' : ok ? term.green('every chain verifies') : term.red(results.some((r) => r.refused !== undefined) && results.every((r) => r.ok || r.refused !== undefined) ? 'verification FAILED: the site refuses a chain for equivocation' : 'verification FAILED'),
      ];
      return { json: { ok, copy, chains: results, evidence }, text, exitCode: ok ? 0 : EXIT_FAILURE };
    });
  },
};

function receiptSummary(v: VerifiedReceipt): Record<string, unknown> {
  const b = v.entry.body;
  const base = {
    gateway: v.gatewayId,
    chain: v.checkpoint.origin,
    index: v.index,
    checkpointSize: v.checkpoint.size,
    checkpointRoot: toHex(v.checkpoint.root),
    provenance: v.provenance,
    roster: v.roster,
    kind: b.kind,
    recorded: new Date(v.entry.time).toISOString(),
    otherSignatures: v.checkpoint.signatures.filter((x) => x.name !== v.checkpoint.origin).map((x) => x.name),
    ...(v.newer !== undefined ? { newerSize: v.newer.size } : {}),
    ...(v.held !== undefined ? { heldSize: v.held.size, heldRoot: toHex(v.held.root) } : {}),
  };
  if (b.kind === 'lock-event') return { ...base, lock: b.event.lock, ctr: b.event.ctr, type: b.event.type, lockTime: new Date(b.event.time).toISOString() };
  if (b.kind === 'roster') return { ...base, op: b.signed.statement.op, role: b.signed.statement.role, id: b.signed.statement.id };
  return base;
}

/** A checkpoint note file, or the JSON of `oti proof consistency` (its `checkpoint` and `proof`). */
async function readHeldCheckpoint(file: string): Promise<{ checkpoint: string; proof?: Uint8Array[] }> {
  const st = await stat(file).catch(() => undefined);
  if (st === undefined) throw new OtiError('ERR_NOT_FOUND', `no file ${file}`);
  if (st.size > 64 * 1024) throw new OtiError('ERR_ARGUMENT', `${file} is larger than a checkpoint or a consistency proof can be`);
  const text = await readFile(file, 'utf8');
  if (!text.trimStart().startsWith('{')) return { checkpoint: text };
  let j: { checkpoint?: unknown; proof?: unknown };
  try {
    j = JSON.parse(text) as typeof j;
  } catch {
    throw new OtiError('ERR_ARGUMENT', `${file} is neither a checkpoint note nor JSON`);
  }
  if (typeof j.checkpoint !== 'string' || !Array.isArray(j.proof) || !j.proof.every((h) => typeof h === 'string')) {
    throw new OtiError('ERR_ARGUMENT', `${file}: expected the JSON of oti proof consistency, with "checkpoint" and "proof"`);
  }
  return { checkpoint: j.checkpoint, proof: (j.proof as string[]).map((h) => new Uint8Array(Buffer.from(h, 'base64'))) };
}

const receipt: Command = {
  name: 'receipt',
  summary: 'Fetch the receipt of an entry from a running gateway and write it to a file.',
  details: [
    'ID is "<lock>:<counter>" for a lock event, or an entry’s 64-hex id. The receipt (CBOR) proves the entry is in the gateway’s chain; anyone can check it offline with oti receipt verify and the site keys.',
    'On a terminal wide enough the receipt is also shown as a QR code (its bytes in Base45, RFC 9285, for phone scanners); --json gives it in base64.',
    'With --format tlog-proof the file is the same receipt as a C2SP tlog-proof (text: index, inclusion proof, the checkpoint with the cosignatures it has, the entry and statements in its extra line), for tools of the transparency-log ecosystem; oti receipt verify reads either form.',
  ],
  positionals: [{ name: 'ID', help: 'entry id, e.g. front-door:42' }],
  options: {
    out: { type: 'string', value: 'FILE', help: 'where to write it (default ./<ID>.receipt.cbor)' },
    size: { type: 'string', value: 'N', help: 'against the older signed checkpoint of tree size N (where a block ended), with the latest checkpoint and a consistency proof to it' },
    format: { type: 'string', value: 'FORM', help: 'cbor (default) or tlog-proof (C2SP text form, written as <ID>.tlog-proof)' },
    ...API_OPTIONS,
  },
  examples: ['oti receipt front-door:42', 'oti receipt front-door:42 --out /tmp/r.cbor --json', 'oti receipt front-door:42 --size 120', 'oti receipt front-door:42 --format tlog-proof'],
  async run(p, term) {
    const id = p.positionals[0] as string;
    if (!/^[a-z0-9][a-z0-9._-]{0,63}:\d{1,16}$|^[0-9a-f]{64}$/.test(id)) throw usage('ID must be "<lock>:<counter>" or 64 hex digits');
    const api = ApiClient.from(p, term);
    const size = str(p, 'size');
    if (size !== undefined && !/^[1-9][0-9]{0,15}$/.test(size)) throw usage('--size must be a tree size (a positive integer)');
    const format = str(p, 'format') ?? 'cbor';
    if (format !== 'cbor' && format !== 'tlog-proof') throw usage('--format must be cbor or tlog-proof');
    const tlog = format === 'tlog-proof';
    const r = await api.request('GET', `/receipts/${encodeURIComponent(id)}?format=${format}${size !== undefined ? `&size=${size}` : ''}`, { accept: tlog ? 'text/plain' : 'application/cbor' });
    if (r.body.length > (tlog ? TLOG_PROOF_MAX_BYTES : RECEIPT_MAX_BYTES)) throw new OtiError('ERR_API', `the receipt is larger than ${tlog ? TLOG_PROOF_MAX_BYTES : RECEIPT_MAX_BYTES} bytes`);
    const want = tlog ? 'text/plain' : 'cbor';
    if (!r.type.includes(want)) throw new OtiError('ERR_API', `GET /receipts/${id}: expected ${tlog ? 'text/plain' : 'application/cbor'}, got ${r.type || 'no content type'}`);
    const out = str(p, 'out') ?? `${id.replace(/:/g, '-')}.${tlog ? 'tlog-proof' : 'receipt.cbor'}`;
    await writeFile(out, r.body, { mode: 0o644 });
    const b64 = Buffer.from(r.body).toString('base64');
    const columns = process.stdout.isTTY ? process.stdout.columns : 0;
    const qr = columns > 0 ? terminalQr(r.body, columns) : undefined;
    const shown = qr !== undefined ? ['QR code (Base45):', qr] : columns > 0 ? ['(the terminal is too narrow for the QR code; widen it, or use the file)'] : [];
    return { json: { id, file: out, bytes: r.body.length, base64: b64 }, text: [`receipt of ${id} written to ${out} (${r.body.length} bytes)`, ...shown] };
  },
};

const receiptVerify: Command = {
  name: 'receipt verify',
  summary: 'Check a receipt offline against the site’s public keys and say what it proves.',
  positionals: [{ name: 'FILE', help: 'a receipt file from oti receipt: CBOR, or a C2SP tlog-proof (told apart by its first line)' }],
  options: {
    'site-keys': { type: 'string', value: 'FILE|HEX', help: 'a site.json (site folder or gateway data folder), or site public key(s) in hex' },
    site: { type: 'string', value: 'ID', help: 'the site id, when --site-keys is hex' },
    newer: { type: 'string', value: 'FILE', help: 'a newer checkpoint you hold (a checkpoint note, or the JSON of oti proof consistency): check that the receipt’s checkpoint is a prefix of it' },
  },
  examples: ['oti receipt verify front-door-42.receipt.cbor --site-keys ./acme-hq/site.json', 'oti receipt verify r.cbor --site-keys 3b6a27bc... --site acme-hq --json', 'oti receipt verify r.cbor --site-keys site.json --newer proof.json'],
  async run(p) {
    const file = p.positionals[0] as string;
    const trust = await readSiteTrust(str(p, 'site-keys', true), str(p, 'site'));
    const st = await stat(file).catch(() => undefined);
    if (st === undefined) throw new OtiError('ERR_NOT_FOUND', `no file ${file}`);
    if (st.size > TLOG_PROOF_MAX_BYTES) throw new OtiError('ERR_RECEIPT_INVALID', `${file} is larger than a receipt can be`);
    const newerFile = str(p, 'newer');
    const held = newerFile !== undefined ? await readHeldCheckpoint(newerFile) : undefined;
    const v = verifyReceipt(receiptBytes(new Uint8Array(await readFile(file))), trust, held !== undefined ? { held } : {});
    const s = receiptSummary(v);
    const what =
      v.entry.body.kind === 'lock-event'
        ? `lock ${String(s.lock)} event ${String(s.ctr)} (${String(s.type)}) at ${String(s.lockTime)}, ${v.provenance === 'lock-signed' ? 'signed by the lock’s enrolled key' : 'from a lock enrolled as unsigned (weaker provenance)'}`
        : `a ${v.entry.body.kind} entry`;
    return {
      json: { ok: true, siteId: trust.siteId, ...s },
      text: [
        `receipt verifies for site ${trust.siteId}:`,
        `  ${what}`,
        `  is entry ${v.index} of chain ${v.checkpoint.origin}, recorded ${String(s.recorded)}`,
        `  under checkpoint size ${v.checkpoint.size}, root ${String(s.checkpointRoot)}, signed by gateway ${v.gatewayId} (enrolled by the site)`,
        v.roster === 'committed'
          ? '  the checkpoint commits to the roster: neither the gateway nor the lock was revoked at or before it'
          : '  roster NOT committed: the checkpoint predates the roster commitment (protocol 1.0), so a revocation could have been left out',
        ...((s.otherSignatures as string[]).length > 0 ? [`  the checkpoint also carries signature lines of ${(s.otherSignatures as string[]).join(', ')} (witness cosignatures; not checked here)`] : []),
        ...(v.newer !== undefined ? [`  which is a prefix of the newer checkpoint size ${v.newer.size} the receipt carries (consistency proof checked)`] : []),
        ...(v.held !== undefined ? [`  and of the checkpoint you hold, size ${v.held.size}, root ${toHex(v.held.root)} (signature and consistency checked)`] : []),
      ],
    };
  },
};

const ports: Command = {
  name: 'ports',
  summary: 'List the serial ports of this machine (for serial.ports in the configuration).',
  options: {},
  examples: ['oti ports', 'oti ports --json'],
  async run() {
    const list = await listPorts();
    return { json: { ports: list }, text: list.length === 0 ? ['no serial ports found'] : list.map((x) => `${x.path}${x.manufacturer !== undefined ? `  ${x.manufacturer}` : ''}${x.serialNumber !== undefined ? `  serial ${x.serialNumber}` : ''}`) };
  },
};

export const opsCommands: readonly Command[] = [status, eventsTail, verify, receipt, receiptVerify, ports];
