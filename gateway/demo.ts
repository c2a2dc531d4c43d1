/**
 * Demo mode (`npm run demo`, or `demo.locks` > 0): simulated locks on real kernel ptys, so that a
 * newcomer sees events, acks and notifications within seconds of starting the gateway.
 *
 * Each demo lock gets a pty pair (socat), a serial driver on the gateway's end and a simulated
 * lock on the other, recording `demo.rate` events per second. The locks are enrolled with the
 * development site's authority key (the demo refuses to run on an enrolled site, whose authority
 * key is not on the gateway: there, `oti lock simulate` runs a simulated lock that the installer
 * enrols like a real one); their keys stay in <data>/demo/ so that a restart continues their
 * counters instead of replaying them.
 */
import { join } from 'node:path';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { generateKeyPair, keyPairFromSeed, Signer, toHex, fromHex } from '../ledger/crypto.js';
import { readKeyFile } from '../ledger/keyfile.js';
import { signStatement } from '../ledger/roster.js';
import { OtiError } from '../ledger/base/errors.js';
import type { Chain } from '../ledger/chain.js';
import { addMqttUser } from './broker/users.js';
import { SerialDriver } from '../drivers/serial.js';
import { SerialSimLink } from '../drivers/simlink.js';
import { SimLock } from '../drivers/simlock.js';
import { ptyPair, type PtyPair } from '../drivers/pty.js';
import type { EventType } from '../ledger/lockevent.js';
import type { GatewayConfig } from './config/config.js';
import type { Identity } from './config/identity.js';
import type { Logger } from './log.js';

const DEMO_TYPES: readonly EventType[] = ['unlocked', 'locked', 'unlocked', 'locked', 'door-ajar', 'locked', 'failed-attempt', 'unlocked', 'locked', 'battery-low'];

export class Demo {
  readonly drivers: SerialDriver[] = [];
  private readonly ptys: PtyPair[] = [];
  private readonly links: SerialSimLink[] = [];
  private readonly locks: SimLock[] = [];

  private constructor(private readonly log: Logger) {}

  /** A command that shows the notifications as they are published. */
  watch = '';

  static async start(opts: { config: GatewayConfig; identity: Identity; chain: Chain; log: Logger; brokerPort: number }): Promise<Demo> {
    const { config, identity, chain, log } = opts;
    let site: Signer;
    try {
      site = new Signer((await readKeyFile(join(config.dataDir, 'dev-site.key'))).seed);
    } catch (e) {
      throw new OtiError(
        'ERR_CONFIG',
        'demo mode needs the development site created by a first start without a bundle; this gateway is enrolled in a real site, whose authority key is not on the gateway: drive simulated locks with oti lock simulate and enrol them with oti lock enroll (docs/CONFIGURATION.md §Simulated locks on an enrolled site)',
        { key: 'demo.locks', allowed: '0 on an enrolled gateway', got: config.demo.locks, origin: 'demo.locks' },
        { cause: e },
      );
    }
    const demo = new Demo(log);
    try {
      const dir = join(config.dataDir, 'demo');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      for (let i = 1; i <= config.demo.locks; i++) {
        const id = `demo-lock-${i}`;
        const seed = await demoSeed(dir, id);
        const key = keyPairFromSeed(seed).publicKey;
        const member = chain.roster.get('lock', id);
        if (member === undefined || member.revoked || toHex(member.key) !== toHex(key)) {
          await chain.append({ kind: 'roster', signed: signStatement(site, { site: identity.trust.siteId, op: 'enroll', role: 'lock', id, key, time: Date.now() }) });
          log.info({ lock: id }, `enrolled demo lock ${id}`);
        }
        const pty = await ptyPair(dir, id);
        demo.ptys.push(pty);
        const driver = new SerialDriver({ path: pty.gateway, gatewayId: identity.gatewayId, window: config.ingest.window });
        demo.drivers.push(driver);
        const lock = new SimLock({ id, seed, firstCounter: Math.max(1, (await chain.lastCounter(id)) + 1), fw: 'demo-1.0' });
        demo.locks.push(lock);
        const link = new SerialSimLink(lock, { path: pty.lock });
        demo.links.push(link);
        link.start();
        lock.startAuto(config.demo.rate, DEMO_TYPES);
        lock.on('ack', (ctr, entry) => log.info({ lock: id, ctr, entry: toHex(entry).slice(0, 16) }, `${id}: event ${ctr} acknowledged, durable as entry ${toHex(entry).slice(0, 16)}…`));
      }
      log.info({ locks: config.demo.locks, rate: config.demo.rate }, `demo: ${config.demo.locks} simulated locks on ptys, ${config.demo.rate} events/s each`);
      // A read-only MQTT user for watching the notifications; its password stays in a 0600 file.
      const pwFile = join(dir, 'mqtt-demo-password');
      let password: string;
      try {
        password = (await readFile(pwFile, 'utf8')).trim();
      } catch {
        password = toHex(generateKeyPair().seed).slice(0, 32);
        await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
      }
      await addMqttUser(config.broker.usersFile, 'demo', 'readonly', password, { replace: true });
      demo.watch = `mosquitto_sub -h 127.0.0.1 -p ${opts.brokerPort} -u demo -P "$(cat ${pwFile})" -t 'oti/${identity.trust.siteId}/events/#' -t 'oti/${identity.trust.siteId}/status/#' -t 'oti/${identity.trust.siteId}/gateways/#' -v`;
    } catch (e) {
      await demo.stop();
      throw e;
    }
    return demo;
  }

  async stop(): Promise<void> {
    for (const l of this.locks) l.close();
    await Promise.all(this.links.map((l) => l.close()));
    await Promise.all(this.ptys.map((p) => p.kill()));
    this.log.debug('demo locks stopped');
  }
}

/** The demo lock's seed, created once and kept (0600) so that its key stays enrolled. */
async function demoSeed(dir: string, id: string): Promise<Uint8Array> {
  const path = join(dir, `${id}.seed`);
  try {
    return fromHex('seed', (await readFile(path, 'utf8')).trim(), 32);
  } catch {
    const seed = generateKeyPair().seed;
    await writeFile(path, `${toHex(seed)}\n`, { mode: 0o600 });
    return seed;
  }
}
