/**
 * Discovery by real multicast between network namespaces: three gateways, each in a namespace of
 * its own on one bridge (test/support/netns.ts), each running test/support/netns-peer.ts on the
 * real mDNS port. Each must find the other two at their namespace addresses; when one link is
 * cut the others lose that gateway and it loses them; when the link comes back all find each
 * other again. Skipped, with the reason, where namespaces cannot be made (not root, no iproute2).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { toHex } from '../../ledger/crypto.js';
import { encodeSigned } from '../../ledger/roster.js';
import { createTopology, netnsUnavailable, type Topology } from '../support/netns.js';
import { enrollGateway, makeSite } from '../support/site.js';
import { waitForEvent } from '../support/wait.js';

const PEER_SCRIPT = fileURLToPath(new URL('../support/netns-peer.js', import.meta.url));
const WAIT_MS = 30_000;

interface PeerEvent {
  event: string;
  gatewayId?: string;
  host?: string;
  port?: number;
  reason?: string;
}

/** The JSON lines of one peer process, with waits for a line matching a predicate. */
class PeerLog {
  readonly events: PeerEvent[] = [];
  /** Emits `line` after each event line is recorded. */
  readonly #lines = new EventEmitter();
  #stderr = '';

  constructor(readonly name: string, child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.events.push(JSON.parse(line) as PeerEvent);
      this.#lines.emit('line');
    });
    child.stderr!.on('data', (b: Buffer) => (this.#stderr += b.toString()));
  }

  /** Waits for an event at index ≥ from that matches. */
  async wait(from: number, match: (e: PeerEvent) => boolean, what: string): Promise<PeerEvent> {
    let hit: PeerEvent | undefined;
    const found = (): boolean => (hit = this.events.slice(from).find(match)) !== undefined;
    await waitForEvent(this.#lines, 'line', `${this.name}: ${what}`, found, WAIT_MS, () => `events: ${JSON.stringify(this.events)}; stderr: ${this.#stderr}`);
    return hit!;
  }
}

void test('three gateways in separate network namespaces discover each other by multicast, lose a cut one and find it again', async (t) => {
  const why = await netnsUnavailable();
  if (why !== undefined) {
    t.skip(why);
    return;
  }
  const topo: Topology = await createTopology(3);
  t.after(() => topo.destroy());

  const site = makeSite('site-netns');
  const ids = ['gw-a', 'gw-b', 'gw-c'];
  const logs = ids.map((gatewayId, i) => {
    const g = enrollGateway(site, gatewayId);
    const args = {
      siteId: site.siteId,
      siteKeys: site.trust.siteKeys.map(toHex),
      gatewayId,
      seed: toHex(g.key.seed),
      enrolment: toHex(encodeSigned(g.statement)),
      brokerPort: 1883,
      announceIntervalMs: 500,
    };
    return new PeerLog(gatewayId, topo.exec(i, process.execPath, [PEER_SCRIPT, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  });
  const sees = (from: number, what: string, i: number, j: number): Promise<PeerEvent> =>
    logs[i]!.wait(from, (e) => e.event === what && e.gatewayId === ids[j], `${ids[i]} ${what} ${ids[j]}`);
  const pairs = ids.flatMap((_, i) => ids.flatMap((__, j) => (i === j ? [] : [[i, j] as const])));

  // Everyone finds everyone, at the address of its namespace: the packets crossed the bridge.
  for (const [i, j] of pairs) {
    const e = await sees(0, 'peer', i, j);
    assert.equal(e.host, topo.ips[j], `${ids[i]} sees ${ids[j]} at its namespace address`);
    assert.equal(e.port, 1883);
  }

  // Cut gw-c off: it and the others lose each other when the records expire.
  const cutAt = logs.map((l) => l.events.length);
  await topo.cut(2);
  for (const [i, j] of pairs.filter(([i, j]) => i === 2 || j === 2)) await sees(cutAt[i]!, 'lost', i, j);
  // Restore the link: all find each other again.
  const restoredAt = logs.map((l) => l.events.length);
  await topo.restore(2);
  for (const [i, j] of pairs.filter(([i, j]) => i === 2 || j === 2)) {
    const e = await sees(restoredAt[i]!, 'peer', i, j);
    assert.equal(e.host, topo.ips[j]);
  }
  // Whatever the cut did between gw-a and gw-b, they see each other now.
  for (const [i, j] of pairs.filter(([i, j]) => i !== 2 && j !== 2)) {
    const last = logs[i]!.events.filter((e) => (e.event === 'peer' || e.event === 'lost') && e.gatewayId === ids[j]).at(-1);
    if (last?.event !== 'peer') await sees(logs[i]!.events.length, 'peer', i, j);
  }
  for (const l of logs) assert.deepEqual(l.events.filter((e) => e.event === 'rejected'), [], `${l.name} rejected nothing`);
});
