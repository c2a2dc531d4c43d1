/**
 * A Discovery alone in a process, for test/integration/netns.test.ts to run inside a network
 * namespace. Its identity comes as one JSON argument (hex keys, as the test made them):
 *
 *   node dist/test/support/netns-peer.js '{"siteId","siteKeys":[hex],"gatewayId","seed","enrolment","brokerPort","announceIntervalMs"}'
 *
 * It uses the built-in backend on the real mDNS port (5353) and prints one JSON line per event:
 * {"event":"ready"}, {"event":"peer"|"lost","gatewayId","host","port"}, {"event":"rejected","reason"}.
 * SIGTERM stops it with a goodbye.
 */
import { fromHex, keyPairFromSeed, toHex } from '../../ledger/crypto.js';
import { decodeSigned } from '../../ledger/roster.js';
import { Discovery, type Peer } from '../../gateway/discovery/discovery.js';

interface PeerArgs {
  siteId: string;
  siteKeys: string[];
  gatewayId: string;
  seed: string;
  enrolment: string;
  brokerPort: number;
  announceIntervalMs: number;
}

const print = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const describe = (event: string, p: Peer): Record<string, unknown> => ({ event, gatewayId: p.gatewayId, key: p.key !== undefined ? toHex(p.key) : undefined, host: p.host, port: p.port });

const a = JSON.parse(process.argv[2] ?? '{}') as PeerArgs;
const d = new Discovery({
  trust: { siteId: a.siteId, siteKeys: a.siteKeys.map((k) => fromHex('siteKeys', k, 32)) },
  gatewayId: a.gatewayId,
  key: keyPairFromSeed(fromHex('seed', a.seed, 32)),
  enrolment: decodeSigned(fromHex('enrolment', a.enrolment)),
  brokerPort: a.brokerPort,
  backend: 'js',
  announceIntervalMs: a.announceIntervalMs,
});
d.on('peer', (p) => print(describe('peer', p)));
d.on('lost', (p) => print(describe('lost', p)));
d.on('rejected', (r) => print({ event: 'rejected', reason: r.reason, from: r.from, detail: r.detail }));
d.on('warning', (e) => print({ event: 'warning', message: e.message }));
process.once('SIGTERM', () => {
  void d.stop().finally(() => process.exit(0));
});
await d.start();
print({ event: 'ready' });
