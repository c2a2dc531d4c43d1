/**
 * Debian's Mosquitto in tests: a real external broker, and its client `mosquitto_sub`.
 *
 * startMosquitto(t, users, { tls }) runs the broker on 127.0.0.1 with a password file made by
 * mosquitto_passwd (one user per entry) and no anonymous access: what a site that already runs a
 * broker has. With `tls`, it speaks MQTT over TLS only, with a self-signed certificate for IP
 * 127.0.0.1 made by the openssl CLI (the certificate is also the CA that verifies it). It is ready
 * once it accepts a connection (a TLS handshake with `tls`), and is stopped, its folder removed,
 * on teardown; kill() stops it before (an outage), and `port` starts one again where it was.
 *
 * mosquittoSub(t, args) runs `mosquitto_sub` with `args` and collects its output lines as they
 * come (with `-v`, `topic payload`); it is killed on teardown.
 */
import { spawn, execFile, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { tempDir } from './site.js';
import { freePort } from './gateway-process.js';
import { waitUntil, WAIT_MS } from './wait.js';

export interface Mosquitto {
  /** mqtt://127.0.0.1:port, or mqtts:// with `tls`. */
  readonly url: string;
  readonly port: number;
  /** What Mosquitto logged. */
  log(): string;
  /** Stops it (SIGKILL: no goodbye to its clients); resolves once it has exited. */
  kill(): Promise<void>;
}

export interface TlsMosquitto extends Mosquitto {
  /** The broker's certificate, which is also the CA that verifies it (PEM file). */
  readonly caFile: string;
}

export interface MosquittoOptions {
  /** MQTT over TLS only (and a verbose log). */
  readonly tls?: boolean;
  /** Mosquitto's max_packet_size, when set. */
  readonly maxPacketBytes?: number;
  /** More lines for mosquitto.conf, after the others (an `acl_file`, a bridge, `max_queued_messages`). */
  readonly moreConfig?: readonly string[];
  /** The port to listen on (default: a free one): a client may have been pointed at it before the broker starts, or again after kill(). */
  readonly port?: number;
}

export function startMosquitto(t: TestContext, users: Record<string, string>, opts: MosquittoOptions & { tls: true }): Promise<TlsMosquitto>;
export function startMosquitto(t: TestContext, users: Record<string, string>, opts?: MosquittoOptions): Promise<Mosquitto>;
export async function startMosquitto(t: TestContext, users: Record<string, string>, opts: MosquittoOptions = {}): Promise<Mosquitto | TlsMosquitto> {
  const tls = opts.tls === true;
  const dir = await tempDir(t, tls ? 'oti-mosquitto-tls-' : 'oti-mosquitto-');
  const run = promisify(execFile);
  const cert = join(dir, 'broker.crt');
  const key = join(dir, 'broker.key');
  if (tls) await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  const passwd = join(dir, 'passwd');
  let first = true;
  for (const [u, p] of Object.entries(users)) {
    await run('mosquitto_passwd', [...(first ? ['-c'] : []), '-b', passwd, u, p]);
    first = false;
  }
  const port = opts.port ?? (await freePort());
  const conf = join(dir, 'mosquitto.conf');
  // Run as this user (as root, Mosquitto would switch to user mosquitto, who cannot read the temp folder).
  const lines = [
    `user ${userInfo().username}`,
    `listener ${port} 127.0.0.1`,
    ...(tls ? [`certfile ${cert}`, `keyfile ${key}`] : []),
    'allow_anonymous false',
    `password_file ${passwd}`,
    'persistence false',
    ...(opts.maxPacketBytes !== undefined ? [`max_packet_size ${opts.maxPacketBytes}`] : []),
    ...(opts.moreConfig ?? []),
    '',
  ];
  await writeFile(conf, lines.join('\n'));
  const proc = spawn('mosquitto', ['-c', conf, ...(tls ? ['-v'] : [])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      await once(proc, 'exit');
    }
  };
  t.after(() => stop('SIGTERM'));
  const accepts = (): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      const sock = tls ? connectTls({ host: '127.0.0.1', port, rejectUnauthorized: false }) : connectTcp(port, '127.0.0.1');
      sock.once(tls ? 'secureConnect' : 'connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
  await waitUntil('mosquitto to accept connections', async () => {
    if (proc.exitCode !== null) throw new Error(`mosquitto did not start: ${log}`);
    return accepts();
  }, WAIT_MS, () => `mosquitto log: ${log}`);
  const url = `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`;
  const kill = (): Promise<void> => stop('SIGKILL');
  return tls ? { url, port, caFile: cert, log: () => log, kill } : { url, port, log: () => log, kill };
}

export interface MosquittoSub {
  readonly proc: ChildProcessWithoutNullStreams;
  /** Every line it printed so far. */
  readonly lines: string[];
  /** The lines as `topic payload` (its `-v` output). */
  messages(): { topic: string; payload: string }[];
}

/** `mosquitto_sub args`, its output lines collected as they come; killed on teardown. */
export function mosquittoSub(t: TestContext, args: readonly string[]): MosquittoSub {
  const proc = spawn('mosquitto_sub', args);
  t.after(() => proc.kill());
  const lines: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => {
    if (l !== '') lines.push(l);
  });
  return {
    proc,
    lines,
    messages: () =>
      lines.map((l) => {
        const i = l.indexOf(' ');
        return i < 0 ? { topic: l, payload: '' } : { topic: l.slice(0, i), payload: l.slice(i + 1) };
      }),
  };
}
