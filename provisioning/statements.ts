/**
 * What the roster commands (`oti lock ...`, `oti gateway revoke`) share: reading the current
 * roster (from a gateway's API, or straight from a data folder's ledger with --data), signing a
 * statement with the site key after a confirmation, and delivering it: POST /roster to the
 * gateway, or a file (--out) to submit later with `oti roster submit`.
 */
import { writeFile, readFile, stat } from 'node:fs/promises';
import { fingerprint, fromHex, toHex } from '../ledger/crypto.js';
import { OtiError } from '../ledger/base/errors.js';
import { encodeSigned, decodeSigned, signStatement, Roster, ROSTER_MAX_BYTES, type RosterStatement, type SignedStatement } from '../ledger/roster.js';
import { rosterListing, type RosterListingMember } from '../gateway/api/roster-admin.js';
import { ApiClient } from './api-client.js';
import { API_OPTIONS, flag, str, usage, type Command, type OptionSpec, type Outcome, type Parsed } from './command.js';
import { readDataIdentity, withLedger } from './ledger-access.js';
import { PASSPHRASE_OPTIONS, SITE_DIR_OPTION, unlockSite } from './site.js';
import type { Terminal } from './terminal.js';

export const DATA_OPTION: Readonly<Record<string, OptionSpec>> = {
  data: { type: 'string', value: 'DIR', help: 'read the roster from this gateway data folder instead of the API' },
};

export const DELIVERY_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  ...SITE_DIR_OPTION,
  ...PASSPHRASE_OPTIONS,
  out: { type: 'string', value: 'FILE', help: 'write the signed statement (CBOR) to FILE instead of sending it to the gateway' },
  yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' },
  ...API_OPTIONS,
};

/**
 * The roster at the head of the gateway's chain: from --data DIR, else GET /roster. `copy` is true
 * when the data folder's ledger was held by a running gateway and a copy of it was read.
 */
export async function readRoster(p: Parsed, term: Terminal): Promise<{ members: RosterListingMember[]; copy: boolean }> {
  const data = str(p, 'data');
  if (data === undefined) {
    const v = (await ApiClient.from(p, term).json('/roster')) as { members?: unknown };
    if (!Array.isArray(v.members)) throw new OtiError('ERR_API', 'GET /roster: the answer has no members list');
    return { members: v.members as RosterListingMember[], copy: false };
  }
  const { origin } = await readDataIdentity(data);
  return withLedger(data, { copyIfLocked: true }, async ({ store, copy }) => {
    if (!(await store.listChains()).some((c) => c.origin === origin && c.role === 'self')) return { members: [], copy };
    const roster = new Roster();
    for (const m of await (await store.chain(origin, 'self')).rosterMembers()) roster.restore(m);
    return { members: rosterListing(roster).members, copy };
  });
}

/** The current member (role, id) or ERR_NOT_FOUND naming where it looked. */
export async function currentMember(p: Parsed, term: Terminal, role: 'gateway' | 'lock', id: string): Promise<RosterListingMember> {
  const m = (await readRoster(p, term)).members.find((x) => x.role === role && x.id === id);
  if (m === undefined) throw new OtiError('ERR_NOT_FOUND', `${role} ${id} is not in the roster (oti lock list shows who is)`, { role, id });
  return m;
}

/** A 32-byte public key given as 64 hex digits on the command line. */
export function keyOption(p: Parsed, name: string): Uint8Array | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  if (!/^[0-9a-fA-F]{64}$/.test(v)) throw usage(`--${name} must be a public key of 64 hex digits`);
  return fromHex(name, v.toLowerCase(), 32);
}

/**
 * Asks to confirm `question` (unless --yes), unlocks the site key, signs the statement built
 * from the site id, and delivers it (see module comment). Returns the command's outcome.
 */
export async function signAndDeliver(p: Parsed, term: Terminal, question: string, build: (siteId: string) => RosterStatement, summary: string): Promise<Outcome> {
  await term.confirm(question, flag(p, 'yes'));
  const site = await unlockSite(p, term);
  const signed = signStatement(site.signer, build(site.siteId));
  return deliver(p, term, signed, summary);
}

export async function deliver(p: Parsed, term: Terminal, signed: SignedStatement, summary: string): Promise<Outcome> {
  const s = signed.statement;
  const base = { op: s.op, role: s.role, id: s.id, key: toHex(s.key), fingerprint: fingerprint(s.key), statement: toHex(encodeSigned(signed)) };
  const out = str(p, 'out');
  if (out !== undefined) {
    await writeFile(out, encodeSigned(signed), { mode: 0o644 });
    return { json: { ...base, written: out }, text: [`${summary}: signed statement written to ${out}`, `submit it later with: oti roster submit ${out}`] };
  }
  const api = ApiClient.from(p, term);
  const r = await api.request('POST', '/roster', { body: encodeSigned(signed), type: 'application/cbor' });
  const v = JSON.parse(Buffer.from(r.body).toString('utf8')) as { index?: unknown; id?: unknown; unchanged?: unknown; reason?: unknown };
  if (v.unchanged === true) {
    const why = v.reason === 'applied-before' ? `${s.op} of ${s.role} ${s.id} was applied before at ${api.base} (this very statement)` : s.op === 'enroll' ? `${s.role} ${s.id} is already enrolled with this key at ${api.base}` : `${s.op} of ${s.role} ${s.id} changes nothing at ${api.base}`;
    return { json: { ...base, index: null, entry: null, unchanged: true, reason: v.reason }, text: [`${why}: nothing was recorded`] };
  }
  return { json: { ...base, index: v.index, entry: v.id }, text: [`${summary}: recorded in the chain of ${api.base} at entry ${String(v.index)}`] };
}

const submit: Command = {
  name: 'roster submit',
  summary: 'Send a signed roster statement written earlier with --out to a gateway.',
  positionals: [{ name: 'FILE', help: 'a statement written by oti lock enroll/revoke/rotate or oti gateway revoke with --out' }],
  options: { ...API_OPTIONS },
  examples: ['oti roster submit lock-front-door.cbor', 'oti roster submit revoke-gw-2.cbor --api http://10.0.0.5:8433 --token $TOKEN'],
  async run(p, term) {
    const file = p.positionals[0] as string;
    const st = await stat(file).catch(() => undefined);
    if (st === undefined) throw new OtiError('ERR_NOT_FOUND', `no file ${file}`);
    if (st.size > ROSTER_MAX_BYTES + 256) throw new OtiError('ERR_ENCODING_TOO_LARGE', `${file} is too large to be a signed statement`);
    const signed = decodeSigned(new Uint8Array(await readFile(file)));
    const s = signed.statement;
    return deliver({ ...p, values: { ...p.values, out: undefined } }, term, signed, `${s.op} of ${s.role} ${s.id}`);
  },
};

export const rosterCommands: readonly Command[] = [submit];
