/**
 * Identity: the data folder holds a gateway identity (site.json and gateway.key) whose enrolment
 * is signed by a key of the site, names this gateway's key, and has not expired (a warning within
 * a week of expiry); a development site is reported as such. Read only: nothing is created.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fromHex, toHex, fingerprint } from '../../ledger/crypto.js';
import { checkSigned, decodeSigned } from '../../ledger/roster.js';
import { readKeyFile } from '../../ledger/keyfile.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { result, why, type CheckResult } from './result.js';

const NAME = 'identity';
const WEEK_MS = 7 * 86_400_000;

export async function checkIdentity(dataDir: string, now: number): Promise<CheckResult> {
  const sitePath = join(dataDir, 'site.json');
  let raw: string;
  try {
    raw = await readFile(sitePath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      return result(NAME, 'warn', `no identity in ${dataDir} yet`, 'place the provisioning bundle (provisioning.bundle, docs/INSTALL.md) and start the gateway, or run oti gateway apply-bundle BUNDLE --data DIR; without one the gateway creates a development site');
    }
    return result(NAME, 'fail', `cannot read ${sitePath}: ${why(e)}`, `chown oti:oti ${sitePath}`);
  }
  try {
    const f = JSON.parse(raw) as { siteId: string; siteKeys: string[]; gatewayId: string; enrolment: string };
    const enrolment = decodeSigned(fromHex('enrolment', f.enrolment));
    checkSigned(enrolment, { siteId: f.siteId, siteKeys: f.siteKeys.map((k) => fromHex('siteKeys', k, 32)) });
    const s = enrolment.statement;
    if (s.role !== 'gateway' || s.id !== f.gatewayId || s.op !== 'enroll') return result(NAME, 'fail', `${sitePath}: the enrolment is not the enrolment of gateway ${f.gatewayId}`, 'apply a new bundle for this gateway (oti gateway enroll, then apply-bundle --force)');
    const key = await readKeyFile(join(dataDir, 'gateway.key')).catch((e: unknown) => (isOtiError(e, 'ERR_KEY_PASSPHRASE_REQUIRED') ? undefined : Promise.reject(e)));
    if (key !== undefined && toHex(key.publicKey) !== toHex(s.key)) return result(NAME, 'fail', `gateway.key is not the key the enrolment names (${fingerprint(s.key)})`, 'restore the matching gateway.key or apply a new bundle');
    const dev = await stat(join(dataDir, 'dev-site.key')).then(() => true, () => false);
    const what = `gateway ${f.gatewayId} of site ${f.siteId}, key ${fingerprint(s.key)}`;
    const data = { site: f.siteId, gateway: f.gatewayId, ...(s.expires !== undefined ? { expires: new Date(s.expires).toISOString() } : {}), development: dev };
    if (s.expires !== undefined && s.expires <= now) return result(NAME, 'fail', `${what}: the enrolment expired on ${new Date(s.expires).toISOString()}`, 'enrol it again: oti gateway enroll --site-dir DIR --id ID, then oti gateway apply-bundle BUNDLE --data DIR --force', data);
    if (s.expires !== undefined && s.expires - now < WEEK_MS) return result(NAME, 'warn', `${what}: the enrolment expires on ${new Date(s.expires).toISOString()}`, 'enrol it again before then (oti gateway enroll, apply-bundle --force)', data);
    if (dev) return result(NAME, 'warn', `${what}: a development site (its authority key is in the data folder)`, 'enrol the gateway in a real site for production (docs/INSTALL.md)', data);
    return result(NAME, 'pass', `${what}${s.expires !== undefined ? `, enrolled until ${new Date(s.expires).toISOString()}` : ''}`, undefined, data);
  } catch (e) {
    return result(NAME, 'fail', `${sitePath} or gateway.key is not a valid identity: ${why(e)}`, 'apply the provisioning bundle again (oti gateway apply-bundle BUNDLE --data DIR --force)');
  }
}

/** Is the gateway running here? Its local API's /health answers (any status) when it does: data.answers. */
export async function checkGatewayRunning(apiUrl: string): Promise<CheckResult> {
  const name = 'gateway running';
  try {
    const res = await fetch(`${apiUrl}/health`, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json().catch(() => ({}))) as { status?: unknown; problems?: unknown };
    const status = typeof body.status === 'string' ? body.status : `HTTP ${res.status}`;
    if (res.status === 200) return result(name, 'pass', `the gateway answers at ${apiUrl} (health ${status})`, undefined, { answers: true });
    return result(name, 'warn', `the gateway answers at ${apiUrl} but its health is ${status}${Array.isArray(body.problems) ? `: ${body.problems.join(', ')}` : ''}`, 'oti status shows why; journalctl -u oti-gateway has the log', { answers: true });
  } catch (e) {
    return result(name, 'warn', `no answer from the gateway's API at ${apiUrl}: ${why((e as { cause?: unknown }).cause ?? e)}`, 'start it (systemctl start oti-gateway) or check api.host/api.port; checks that need the ports free are meaningful only while it is stopped', { answers: false });
  }
}
