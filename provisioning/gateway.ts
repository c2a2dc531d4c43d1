/**
 * `oti gateway enroll|apply-bundle|revoke`. Enrolment makes a provisioning bundle
 * (gateway/config/bundle.ts): a fresh gateway key and its site-signed enrolment with an expiry, for the
 * SD card's boot partition (the gateway applies it on first start) or for apply-bundle.
 */
import { access, open } from 'node:fs/promises';
import { fingerprint } from '../ledger/crypto.js';
import { OtiError } from '../ledger/base/errors.js';
import { moveAside } from '../ledger/base/files.js';
import { ID_PATTERN } from '../ledger/schema.js';
import { applyBundle, createBundle, BUNDLE_MAX_BYTES } from '../gateway/config/bundle.js';
import { flag, parseDuration, str, usage, type Command, type OptionSpec, type Parsed } from './command.js';
import { PASSPHRASE_OPTIONS, SITE_DIR_OPTION, unlockSite } from './site.js';
import { DATA_OPTION, DELIVERY_OPTIONS, currentMember, keyOption, signAndDeliver } from './statements.js';
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
  details: ['Checks the site signature, the expiry and the key, writes site.json and gateway.key (0600), then renames the bundle to <name>.applied. Stop the gateway first.'],
  positionals: [{ name: 'BUNDLE', help: 'the bundle file made by oti gateway enroll' }],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder (e.g. /var/lib/oti-gateway)' },
    force: { type: 'boolean', help: 'replace an identity already in the data folder (the old gateway.key is moved aside to gateway.key.replaced-<time>)' },
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
        `  gateway key ${r.gatewayKeyFingerprint}; site key(s) ${r.siteKeyFingerprints.join(', ')} — compare them with the site key fingerprint that oti site init printed`,
        r.appliedPath !== undefined ? `  bundle renamed to ${r.appliedPath}` : term.yellow(`  could not rename ${bundlePath}; delete it so it is not applied again`),
      ],
    };
  },
};

const revoke: Command = {
  name: 'gateway revoke',
  summary: 'Revoke a gateway (lost, stolen, replaced): peers stop trusting its chain after this point.',
  details: ['Send it to another gateway of the site (a gateway cannot record its own revocation).'],
  options: { id: { type: 'string', value: 'GW', help: 'the gateway to revoke' }, key: { type: 'string', value: 'HEX', help: 'its current key (default: looked up in the roster)' }, ...DATA_OPTION, ...DELIVERY_OPTIONS },
  examples: ['oti gateway revoke --site-dir ./acme-hq --id gw-lobby --api http://gw-hall.local:8433 --token $TOKEN', 'oti gateway revoke --site-dir ./acme-hq --id gw-lobby --key 3b6a... --out revoke-gw-lobby.cbor --yes'],
  async run(p, term) {
    const id = str(p, 'id', true);
    if (!ID_PATTERN.test(id)) throw usage(`--id must match ${String(ID_PATTERN)}`);
    const key = keyOption(p, 'key') ?? Buffer.from((await currentMember(p, term, 'gateway', id)).key, 'hex');
    return signAndDeliver(p, term, `Revoke gateway ${id} (key ${fingerprint(key)})? This cannot be undone.`, (site) => ({ site, op: 'revoke', role: 'gateway', id, key, time: Date.now() }), `gateway ${id} revoked`);
  },
};

export const gatewayCommands: readonly Command[] = [enroll, apply, revoke];
