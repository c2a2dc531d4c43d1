/**
 * `oti archive …`: the questions of docs/ARCHIVE.md §Queries asked of a running fleet archive
 * over its HTTP API (--archive URL or $OTI_ARCHIVE_URL, --token or $OTI_ARCHIVE_TOKEN).
 */
import { writeFile } from 'node:fs/promises';
import { OtiError } from '../ledger/base/errors.js';
import { RECEIPT_MAX_BYTES } from '../ledger/receipt.js';
import { TLOG_PROOF_MAX_BYTES } from '../ledger/tlog-proof.js';
import { ApiClient, type ApiTarget } from './api-client.js';
import { str, usage, type Command, type OptionSpec, type Parsed } from './command.js';
import type { Terminal } from './terminal.js';

const DEFAULT_ARCHIVE = 'http://127.0.0.1:8480';
const ARCHIVE_API: ApiTarget = { what: 'the archive', address: '--archive or $OTI_ARCHIVE_URL', running: 'it is started with npm run archive, docs/ARCHIVE.md', token: '--token or OTI_ARCHIVE_TOKEN' };

const ARCHIVE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  archive: { type: 'string', value: 'URL', help: `the archive's HTTP API (default ${DEFAULT_ARCHIVE}, or $OTI_ARCHIVE_URL)` },
  token: { type: 'string', value: 'TOKEN', help: 'archive API bearer token (default $OTI_ARCHIVE_TOKEN)' },
};

const PAGE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  from: { type: 'string', value: 'TIME', help: 'from this time on (ISO 8601 or ms since 1970)' },
  to: { type: 'string', value: 'TIME', help: 'before this time' },
  after: { type: 'string', value: 'CURSOR', help: 'the next page: the cursor the previous page printed' },
  limit: { type: 'string', value: 'N', help: 'rows a page (default 100)' },
};

function client(p: Parsed, term: Terminal): ApiClient {
  return new ApiClient(str(p, 'archive') ?? term.env('OTI_ARCHIVE_URL') ?? DEFAULT_ARCHIVE, str(p, 'token') ?? term.env('OTI_ARCHIVE_TOKEN'), ARCHIVE_API);
}

function time(p: Parsed, name: string): string | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  if (/^\d{1,16}$/.test(v)) return v;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw usage(`--${name} must be an ISO 8601 time or ms since 1970`);
  return String(ms);
}

function query(p: Parsed, names: readonly string[]): string {
  const q = new URLSearchParams();
  for (const n of names) {
    const v = n === 'from' || n === 'to' ? time(p, n) : str(p, n);
    if (v !== undefined) q.set(n, v);
  }
  return q.toString();
}

interface Page {
  readonly items: readonly Record<string, unknown>[];
  readonly next?: string;
}

function pageText(page: Page, line: (i: Record<string, unknown>) => string): string[] {
  return [...page.items.map(line), ...(page.next !== undefined ? [`more: --after ${page.next}`] : [])];
}

const events: Command = {
  name: 'archive events',
  summary: 'Lock events in the fleet archive, by site, lock, type and time range.',
  details: ['Needs --site or --lock (a lock’s history is --lock alone). Pages in time order; the last line gives the --after for the next page.'],
  options: { site: { type: 'string', value: 'ID', help: 'the site' }, lock: { type: 'string', value: 'ID', help: 'the lock' }, type: { type: 'string', value: 'TYPE', help: 'event type (unlocked, locked, …)' }, ...PAGE_OPTIONS, ...ARCHIVE_OPTIONS },
  examples: ['oti archive events --site acme-hq --from 2026-12-01 --to 2026-12-08', 'oti archive events --lock front-door --type unlocked --json'],
  async run(p, term) {
    if (str(p, 'site') === undefined && str(p, 'lock') === undefined) throw usage('give --site or --lock');
    const page = (await client(p, term).json(`/v1/events?${query(p, ['site', 'lock', 'type', 'from', 'to', 'after', 'limit'])}`)) as Page;
    return { json: page, text: pageText(page, (e) => `${new Date(Number(e['time'])).toISOString()}  ${String(e['site'])}  ${String(e['lock'])}#${String(e['ctr'])}  ${String(e['type'])}  ${String(e['origin'])}:${String(e['index'])}`) };
  },
};

const gaps: Command = {
  name: 'archive gaps',
  summary: 'Coverage gaps of a site in a period: missing counters and blind intervals.',
  options: { site: { type: 'string', value: 'ID', help: 'the site (required)' }, ...PAGE_OPTIONS, ...ARCHIVE_OPTIONS },
  examples: ['oti archive gaps --site acme-hq --from 2026-11-30 --to 2026-12-07'],
  async run(p, term) {
    str(p, 'site', true);
    const page = (await client(p, term).json(`/v1/gaps?${query(p, ['site', 'from', 'to', 'after', 'limit'])}`)) as Page;
    return { json: page, text: pageText(page, (g) => `${new Date(Number(g['time'])).toISOString()}  ${String(g['origin'])}  ${g['lock'] !== undefined ? `lock ${String(g['lock'])} counters ${String(g['from'])}..${String(g['to'])}` : `${String(g['source'])} blind ${String(g['start'])}..${String(g['end'])} (${String(g['reason'])})`}`) };
  },
};

const chains: Command = {
  name: 'archive chains',
  summary: 'The archived state of each chain: blocks, entries, last checkpoint, cosigners, confirmed entries, evidence held, and whether it is behind a gap in the intake.',
  options: { site: { type: 'string', value: 'ID', help: 'only this site' }, ...ARCHIVE_OPTIONS },
  examples: ['oti archive chains', 'oti archive chains --site acme-hq --json'],
  async run(p, term) {
    const r = (await client(p, term).json(`/v1/chains?${query(p, ['site'])}`)) as { chains: Record<string, unknown>[] };
    const text = (c: Record<string, unknown>): string => {
      const cosigners = (c['cosigners'] as { gateway: string; size: number }[] | undefined) ?? [];
      const who = cosigners.length === 0 ? 'no cosigners' : `cosigned by ${cosigners.map((w) => `${w.gateway}@${w.size}`).join(', ')}`;
      const behind = c['behind'] as { next: number; seen: number; setAside: number; remedy: string } | undefined;
      const gap = behind === undefined ? '' : `  BEHIND: block ${behind.next} and later missing, blocks up to ${behind.seen} came after them (${behind.setAside} set aside); ${behind.remedy}`;
      return `${String(c['origin'])}  ${String(c['blocks'])} blocks  ${String(c['size'])} entries  confirmed ${String(c['confirmed'])} (quorum ${String(c['quorum'])}, ${who})  archived ${new Date(Number(c['archivedAt'])).toISOString()}${Number(c['evidence']) > 0 ? `  EVIDENCE ${String(c['evidence'])}` : ''}${gap}`;
    };
    return { json: r, text: r.chains.map(text) };
  },
};

const receipt: Command = {
  name: 'archive receipt',
  summary: 'The receipt of an archived entry, checkable with oti receipt verify like a gateway’s.',
  details: [
    'The checkpoint carries the witnesses’ cosignature lines the archive holds for it: by default the checkpoint of the size the most witnesses cosigned that covers the entry (then with the last archived checkpoint and a consistency proof to it), else the last archived checkpoint without them.',
    'With --format tlog-proof the file is the same receipt as a C2SP tlog-proof (text), as oti receipt writes it.',
  ],
  positionals: [{ name: 'ORIGIN', help: 'the chain, oti/<site>/<gateway>' }, { name: 'INDEX', help: 'the entry’s index in it' }],
  options: {
    out: { type: 'string', value: 'FILE', help: 'where to write it (default ./<site>-<gateway>-<index>.receipt.cbor, or .tlog-proof)' },
    size: { type: 'string', value: 'N', help: 'against the signed checkpoint of tree size N (where a block ended), with the cosignatures held for it' },
    format: { type: 'string', value: 'FORM', help: 'cbor (default) or tlog-proof' },
    ...ARCHIVE_OPTIONS,
  },
  examples: ['oti archive receipt oti/acme-hq/gw-door 42', 'oti archive receipt oti/acme-hq/gw-door 42 --out r.cbor --json', 'oti archive receipt oti/acme-hq/gw-door 42 --size 120 --format tlog-proof'],
  async run(p, term) {
    const [origin, index] = p.positionals as [string, string];
    if (!/^oti\/[a-z0-9][a-z0-9._-]{0,63}\/[a-z0-9][a-z0-9._-]{0,63}$/.test(origin)) throw usage('ORIGIN must be oti/<site>/<gateway>');
    if (!/^\d{1,16}$/.test(index)) throw usage('INDEX must be a whole number');
    const size = str(p, 'size');
    if (size !== undefined && !/^[1-9][0-9]{0,15}$/.test(size)) throw usage('--size must be a tree size (a positive integer)');
    const format = str(p, 'format') ?? 'cbor';
    if (format !== 'cbor' && format !== 'tlog-proof') throw usage('--format must be cbor or tlog-proof');
    const tlog = format === 'tlog-proof';
    const r = await client(p, term).request('GET', `/v1/receipt?origin=${encodeURIComponent(origin)}&index=${index}${size !== undefined ? `&size=${size}` : ''}&format=${format}`, { accept: tlog ? 'text/plain' : 'application/cbor' });
    if (r.body.length > (tlog ? TLOG_PROOF_MAX_BYTES : RECEIPT_MAX_BYTES)) throw new OtiError('ERR_API', `the receipt is larger than ${tlog ? TLOG_PROOF_MAX_BYTES : RECEIPT_MAX_BYTES} bytes`);
    const out = str(p, 'out') ?? `${origin.slice(4).replace('/', '-')}-${index}.${tlog ? 'tlog-proof' : 'receipt.cbor'}`;
    await writeFile(out, r.body, { mode: 0o644 });
    return { json: { origin, index: Number(index), file: out, bytes: r.body.length }, text: [`receipt of ${origin} entry ${index} written to ${out} (${r.body.length} bytes); check it with oti receipt verify ${out} --site-keys <site.json>`] };
  },
};

const cosignatures: Command = {
  name: 'archive cosignatures',
  summary: 'The cosigned checkpoints of an archived chain: per witness gateway, its largest, as signed notes.',
  details: ['Each note is the chain gateway’s checkpoint with the witness’s C2SP tlog-cosignature line; the archive checked both signatures with the site’s rosters before recording it.'],
  positionals: [{ name: 'ORIGIN', help: 'the chain, oti/<site>/<gateway>' }],
  options: { ...ARCHIVE_OPTIONS },
  examples: ['oti archive cosignatures oti/acme-hq/gw-door', 'oti archive cosignatures oti/acme-hq/gw-door --json'],
  async run(p, term) {
    const [origin] = p.positionals as [string];
    if (!/^oti\/[a-z0-9][a-z0-9._-]{0,63}\/[a-z0-9][a-z0-9._-]{0,63}$/.test(origin)) throw usage('ORIGIN must be oti/<site>/<gateway>');
    const r = (await client(p, term).json(`/v1/cosignatures?origin=${encodeURIComponent(origin)}`)) as { cosignatures: Record<string, unknown>[] };
    return { json: r, text: r.cosignatures.length === 0 ? [`no cosignatures of ${origin} archived`] : r.cosignatures.map((c) => `${String(c['witness'])}  size ${String(c['size'])}  block ${String(c['block'])}  cosigned ${new Date(Number(c['time'])).toISOString()}`) };
  },
};

export const archiveCommands: readonly Command[] = [events, gaps, chains, cosignatures, receipt];
