/**
 * A real Mosquitto (Debian's) on 127.0.0.1 speaking MQTT over TLS only, with a self-signed
 * certificate for IP 127.0.0.1 made by the openssl CLI (its own CA) and a password file made by
 * mosquitto_passwd: what a site that already runs a broker has. Stopped, and its folder removed,
 * on teardown.
 */
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect as connectTls } from 'node:tls';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { tempDir } from './site.js';
import { freePort } from './gateway-process.js';

export interface TlsMosquitto {
  readonly url: string;
  readonly port: number;
  /** The broker's certificate, which is also the CA that verifies it (PEM file). */
  readonly caFile: string;
  /** What Mosquitto logged. */
  log(): string;
}

export async function startTlsMosquitto(t: TestContext, users: Record<string, string>): Promise<TlsMosquitto> {
  const dir = await tempDir(t, 'oti-mosquitto-tls-');
  const run = promisify(execFile);
  const cert = join(dir, 'broker.crt');
  const key = join(dir, 'broker.key');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  const passwd = join(dir, 'passwd');
  let first = true;
  for (const [u, p] of Object.entries(users)) {
    await run('mosquitto_passwd', [...(first ? ['-c'] : []), '-b', passwd, u, p]);
    first = false;
  }
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  // Run as this user (as root, Mosquitto would switch to user mosquitto, who cannot read the temp folder).
  await writeFile(conf, [`user ${userInfo().username}`, `listener ${port} 127.0.0.1`, `certfile ${cert}`, `keyfile ${key}`, 'allow_anonymous false', `password_file ${passwd}`, 'persistence false', ''].join('\n'));
  const proc = spawn('mosquitto', ['-c', conf, '-v'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  t.after(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    }
  });
  // Ready once it completes a TLS handshake.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connectTls({ host: '127.0.0.1', port, rejectUnauthorized: false });
      sock.once('secureConnect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`mosquitto did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `mqtts://127.0.0.1:${port}`, port, caFile: cert, log: () => log };
}
