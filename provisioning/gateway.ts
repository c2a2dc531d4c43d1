/**
 * `oti gateway enroll|apply-bundle|revoke`. Enrolment makes a provisioning bundle
 * (gateway/config/bundle.ts): a fresh gateway key and its site-signed enrolment with an expiry, for the
 * SD card's boot partition (the gateway applies it on first start) or for apply-bundle.
 */
import { access, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fingerprint, fromHex } from '../ledger/crypto.js';
import { checkSigned, decodeSigned, signStatement, type SignedStatement } from '../ledger/roster.js';
import { OtiError } from '../ledger/base/errors.js';
import { moveAside } from '../ledger/base/files.js';
import { ID_PATTERN } from '../ledger/schema.js';
import { applyBundle, createBundle, readBundle, BUNDLE_MAX_BYTES } from '../gateway/config/bundle.js';
import { SITE_FILE } from '../gateway/config/identity.js';
import { ApiClient } from './api-client.js';
import { flag, parseDuration, str, usage, type Command, type OptionSpec, type Parsed } from './command.js';
import { readDataIdentity } from './ledger-access.js';
import { PASSPHRASE_OPTIONS, SITE_DIR_OPTION, unlockSite } from './site.js';
import { DELIVERY_OPTIONS, deliver, keyOption, readRoster } from './statements.js';
import type { Terminal } from './terminal.js';

const BUNDLE_PASSPHRASE: Readonly<Record<string, OptionSpec>> = {
  'bundle-passphrase-file': { type: 'string', value: 'FILE', help: 'bundle passphrase from FILE (else $OTI_BUNDLE_PASSPHRASE, else a prompt)' },
};

function bundlePassphrase(p: Parsed, term: Terminal, confirm: boolean): Promise<string> {
  return term.passphrase({ file: str(p, 'bundle-passphrase-file'), fileOption: '--bundle-passphrase-file', env: 'OTI_BUNDLE_PASSPHRASE', purpose: 'gateway key in the bundle', confirm });
}

const enroll: Command = {
  name: 'gateway enroll',
  summary: 'Make a provisioning bundle: a gateway key and its enrolment signed by the site key, valid for a limited time.',
  details: [
    'Copy the bundle to the boot partition of the gateway’s SD card as oti-bundle.json (the gateway applies it on first start), or apply it with oti gateway apply-bundle.',
    'The bundle holds the gateway’s private key: it is written 0600; with --encrypt the key is encrypted under a bundle passphrase that the gateway then needs (OTI_BUNDLE_PASSPHRASE).',
  ],
  options: {
    id: { type: 'string', value: 'GW', help: 'the gateway id' },
    expires: { type: 'string', value: 'DURATION', help: 'how long the enrolment is valid: 30d (default), 12h, 2w...' },
    out: { type: 'string', value: 'FILE', help: 'bundle file to write (default ./<GW>.bundle.json)' },
    encrypt: { type: 'boolean', help: 'encrypt the gateway key in the bundle under a passphrase' },
    force: { type: 'boolean', help: 'replace an existing bundle file (the old one is moved aside to <file>.replaced-<time>)' },
    ...SITE_DIR_OPTION,
    ...PASSPHRASE_OPTIONS,
    ...BUNDLE_PASSPHRASE,
  },
  examples: ['oti gateway enroll --site-dir ./acme-hq --id gw-lobby', 'oti gateway enroll --site-dir ./acme-hq --id gw-lobby --expires 7d --out /media/boot/oti-bundle.json --encrypt'],
  async run(p, term) {
    const id = str(p, 'id', true);
    if (!ID_PATTERN.test(id)) throw usage(`--id must match ${String(ID_PATTERN)}`);
    const validForMs = parseDuration('expires', str(p, 'expires') ?? '30d');
    const out = str(p, 'out') ?? `${id}.bundle.json`;
    const force = flag(p, 'force');
    if (!force && (await access(out).then(() => true, () => false))) throw new OtiError('ERR_ARGUMENT', `${out} exists; refusing to overwrite it (use --force)`, { path: out });
    const site = await unlockSite(p, term);
    const passphrase = flag(p, 'encrypt') ? await bundlePassphrase(p, term, true) : undefined;
    const { bundle, statement } = await createBundle({ site: site.signer, siteId: site.siteId, siteKeys: site.siteKeys, gatewayId: id, validForMs, now: Date.now(), ...(passphrase !== undefined ? { passphrase } : {}) });
    // A bundle holds a gateway key: --force moves the old one aside, never writes over it.
    if (force) await moveAside(out);
    const fh = await open(out, 'wx', 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(`${JSON.stringify(bundle, null, 2)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    const fp = fingerprint(statement.statement.key);
    return {
      json: { siteId: site.siteId, gatewayId: id, bundle: out, fingerprint: fp, expires: bundle.expires, encrypted: passphrase !== undefined },
      text: [
        `bundle for gateway ${term.bold(id)} of site ${site.siteId} written to ${out} (0600${passphrase !== undefined ? ', key encrypted' : ''})`,
        `  gateway key ${fp}, enrolment valid until ${bundle.expires}`,
        '  copy it to the SD card’s boot partition as oti-bundle.json, or run: oti gateway apply-bundle FILE --data DIR',
      ],
    };
  },
};

const apply: Command = {
  name: 'gateway apply-bundle',
  summary: 'Apply a provisioning bundle to a gateway data folder now (what the gateway does on first start).',
  details: [
    'Checks the site signature, the expiry and the key, writes site.json and gateway.key (0600), then renames the bundle to <name>.applied. Stop the gateway first.',
    'With --force over another identity, everything of the old one (site.json, gateway.key, ledger/, last-checkpoint.json, ledger-decision.json, witness and uplink state, webhook cursors, person keys; the privacy files too when the site changes) is moved together into DIR/identity.replaced-<time>/, so the new identity starts on an empty ledger; nothing is deleted.',
  ],
  positionals: [{ name: 'BUNDLE', help: 'the bundle file made by oti gateway enroll' }],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder (e.g. /var/lib/oti-gateway)' },
    force: { type: 'boolean', help: 'replace an identity already in the data folder (all of the old one is moved aside to DIR/identity.replaced-<time>/)' },
    ...BUNDLE_PASSPHRASE,
  },
  examples: ['sudo -u oti oti gateway apply-bundle /boot/firmware/oti-bundle.json --data /var/lib/oti-gateway', 'oti gateway apply-bundle gw-lobby.bundle.json --data ./data --json'],
  async run(p, term) {
    const bundlePath = p.positionals[0] as string;
    const data = str(p, 'data');
    if (data === undefined) throw usage('--data DIR (the gateway data folder) is required');
    const fh = await open(bundlePath, 'r').catch(() => undefined);
    if (fh === undefined) throw new OtiError('ERR_NOT_FOUND', `no bundle at ${bundlePath}`);
    let encrypted = false;
    try {
      const st = await fh.stat();
      if (st.size <= BUNDLE_MAX_BYTES) encrypted = (await fh.readFile('utf8')).includes('"encryption"');
    } finally {
      await fh.close();
    }
    const passphrase = encrypted ? await bundlePassphrase(p, term, false) : undefined;
    const r = await applyBundle(bundlePath, data, { now: Date.now(), replace: flag(p, 'force'), ...(passphrase !== undefined ? { passphrase } : {}) });
    return {
      json: r,
      text: [
        `${r.alreadyApplied ? 'already applied' : 'applied'}: gateway ${term.bold(r.gatewayId)} of site ${r.siteId} in ${data}`,
        ...(r.replaced !== undefined ? [`  the old identity${r.replaced.gatewayId !== undefined ? ` (gateway ${r.replaced.gatewayId})` : ''} was moved to ${r.replaced.folder}: ${r.replaced.moved.join(', ')}`] : []),
        `  gateway key ${r.gatewayKeyFingerprint}; site key(s) ${r.siteKeyFingerprints.join(', ')} — compare them with the site key fingerprint that oti site init printed`,
        r.appliedPath !== undefined ? `  bundle renamed to ${r.appliedPath}` : term.yellow(`  could not rename ${bundlePath}; delete it so it is not applied again`),
      ],
    };
  },
};

/**
 * The enrolment statement of gateway `id`: from --bundle FILE (its bundle, kept or `.applied`; an
 * expired one will do), else from `ownData`, its own data folder (site.json). A gateway enrolled
 * by bundle is listed in its own chain only, so another gateway's roster needs this statement
 * before it can record a revocation.
 */
async function enrolmentOf(p: Parsed, id: string, ownData: string | undefined): Promise<{ signed: SignedStatement; from: string } | undefined> {
  const file = str(p, 'bundle');
  if (file !== undefined) {
    const { bundle, signed } = await readBundle(file, { now: Date.now(), acceptExpired: true });
    if (bundle.gatewayId !== id) throw usage(`${file} is the bundle of gateway ${bundle.gatewayId}, not ${id}`);
    return { signed, from: file };
  }
  if (ownData === undefined) return undefined;
  const { trust } = await readDataIdentity(ownData);
  const path = join(ownData, SITE_FILE);
  const f = JSON.parse(await readFile(path, 'utf8')) as { enrolment?: unknown };
  if (typeof f.enrolment !== 'string' || !/^([0-9a-f]{2})+$/.test(f.enrolment)) throw new OtiError('ERR_KEY_FILE_FORMAT', `${path}: enrolment is missing or invalid`, { path });
  const signed = decodeSigned(fromHex('enrolment', f.enrolment));
  checkSigned(signed, trust);
  const s = signed.statement;
  if (s.op !== 'enroll' || s.role !== 'gateway' || s.id !== id) throw new OtiError('ERR_KEY_FILE_FORMAT', `${path}: the enrolment is op "${s.op}" for ${s.role} ${s.id}, not gateway ${id}'s`, { path });
  return { signed, from: path };
}

const revoke: Command = {
  name: 'gateway revoke',
  summary: 'Revoke a gateway (lost, stolen, replaced, retired): peers stop trusting its chain after this point.',
  details: [
    'Send it to another gateway of the site (a gateway cannot record its own revocation).',
    'A gateway enrolled by bundle is listed only in its own chain until its enrolment reaches another one. When the receiving gateway’s roster does not list it, give the revoked gateway’s data folder (--data DIR, its site.json holds the enrolment) or its bundle (--bundle FILE): the enrolment is submitted first, then the revocation. With --out, the enrolment is written to FILE.enrolment.cbor next to it, to submit first.',
  ],
  options: {
    id: { type: 'string', value: 'GW', help: 'the gateway to revoke' },
    key: { type: 'string', value: 'HEX', help: 'its current key (default: looked up in the roster, else its enrolment)' },
    data: { type: 'string', value: 'DIR', help: 'the revoked gateway’s own data folder (its enrolment is taken from it), or another gateway’s to read the roster from instead of the API' },
    bundle: { type: 'string', value: 'FILE', help: 'the revoked gateway’s bundle (kept or .applied): its enrolment is taken from it' },
    ...DELIVERY_OPTIONS,
  },
  examples: [
    'oti gateway revoke --site-dir ./acme-hq --id gw-lobby --api http://gw-hall.local:8433 --token $TOKEN',
    'oti gateway revoke --site-dir ./acme-hq --id gw-lobby --data /var/lib/oti-gateway --api http://gw-hall.local:8433 --token $TOKEN',
    'oti gateway revoke --site-dir ./acme-hq --id gw-lobby --key 3b6a... --out revoke-gw-lobby.cbor --yes',
  ],
  async run(p, term) {
    const id = str(p, 'id', true);
    if (!ID_PATTERN.test(id)) throw usage(`--id must match ${String(ID_PATTERN)}`);
    const data = str(p, 'data');
    const out = str(p, 'out');
    // --data is either the revoked gateway's own folder (for its enrolment) or another gateway's (for its roster).
    const ownData = data !== undefined && (await readDataIdentity(data)).gatewayId === id ? data : undefined;
    const enrolment = await enrolmentOf(p, id, ownData);
    // The roster the revocation must fit: the receiving gateway's (GET /roster), or that of --data
    // when it is another gateway's folder; unknown when the statement goes to a file.
    const fromApi: Parsed = { ...p, values: { ...p.values, data: undefined } };
    const rosterFrom = ownData !== undefined ? fromApi : p;
    const where = str(rosterFrom, 'data') !== undefined ? `the roster in ${data as string}` : `the roster of ${ApiClient.from(p, term).base}`;
    const unknownTarget = out !== undefined && str(rosterFrom, 'data') === undefined && (enrolment !== undefined || str(p, 'key') !== undefined);
    const members = unknownTarget ? undefined : (await readRoster(rosterFrom, term)).members;
    const listed = members?.find((m) => m.role === 'gateway' && m.id === id);
    if (listed === undefined && enrolment === undefined && (members !== undefined || str(p, 'key') === undefined)) {
      throw new OtiError(
        'ERR_NOT_FOUND',
        `gateway ${id} is not in ${where}: a gateway enrolled by bundle is listed only in its own chain until its enrolment is submitted; give its data folder (--data DIR) or its bundle (--bundle FILE) and its enrolment is submitted first`,
        { role: 'gateway', id },
      );
    }
    const key = keyOption(p, 'key') ?? (listed !== undefined ? fromHex('key', listed.key, 32) : (enrolment as { signed: SignedStatement }).signed.statement.key);
    const first = listed === undefined ? enrolment : undefined;
    const also = first === undefined ? '' : out === undefined ? ` Its enrolment (from ${first.from}) is submitted first: ${where} does not list it.` : ` Its enrolment (from ${first.from}) is written to ${out}.enrolment.cbor, to submit first.`;
    await term.confirm(`Revoke gateway ${id} (key ${fingerprint(key)})?${also} This cannot be undone.`, flag(p, 'yes'));
    const site = await unlockSite(p, term);
    const enrolled = first === undefined ? undefined : await deliver(out === undefined ? fromApi : { ...p, values: { ...p.values, out: `${out}.enrolment.cbor` } }, term, first.signed, out === undefined ? `enrolment of gateway ${id} (from ${first.from}; ${where} did not list it)` : `enrolment of gateway ${id} (from ${first.from}), to submit before the revocation`);
    const revoked = await deliver(fromApi, term, signStatement(site.signer, { site: site.siteId, op: 'revoke', role: 'gateway', id, key, time: Date.now() }), `gateway ${id} revoked`);
    if (enrolled === undefined) return revoked;
    return { json: { ...(revoked.json as Record<string, unknown>), enrolment: enrolled.json }, text: [...enrolled.text, ...revoked.text] };
  },
};

export const gatewayCommands: readonly Command[] = [enroll, apply, revoke];
