/**
 * GatewayMetrics against the real ingest pipeline and a real chain, fed by a fake driver that
 * implements the LockDriver contract at the hardware edge: counters and the ack latency histogram
 * follow what happens to events, the queue depth gauge reads the pipeline, the providers feed
 * the chain, driver and peer gauges, and detaching stops the counting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSite, enrollLock, openChain, signedEvent } from '../support/site.js';
import { GatewayMetrics } from '../../gateway/api/metrics.js';
import { Ingest } from '../../gateway/ingest.js';
import { FakeDriver } from '../support/fake-driver.js';
import type { DriverStatus } from '../../drivers/driver.js';
import { waitUntil } from '../support/wait.js';



interface Sample {
  readonly value: number;
  readonly labels: Record<string, string | number | undefined>;
  readonly metricName?: string;
}

async function value(m: GatewayMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = m.registry.getSingleMetric(name);
  assert.ok(metric !== undefined, `metric ${name} is registered`);
  // Histograms list their _bucket, _sum and _count samples under metricName; gauges and counters have none.
  const values = (await metric.get()).values as readonly Sample[];
  const want = Object.entries(labels);
  return values.find((v) => (v.metricName ?? name) === name && Object.keys(v.labels).length === want.length && want.every(([k, x]) => v.labels[k] === x))?.value;
}

void test('counters, latency histogram and queue depth follow the real pipeline', async (t) => {
  const site = makeSite();
  const { chain } = await openChain(t, site, { sealDelayMs: 1 });
  const lock = enrollLock(site, 'front');
  await chain.append({ kind: 'roster', signed: lock.statement });
  const driver = new FakeDriver();
  const ingest = new Ingest({ chain });
  const metrics = new GatewayMetrics();
  const detach = metrics.observeIngest(ingest);
  ingest.attach(driver);
  t.after(async () => {
    driver.release();
    await driver.stop();
    await ingest.close();
  });

  // Three events held at their acks: the queue depth gauge reads them in flight.
  driver.hold();
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) {
    sent.push(signedEvent(lock));
    driver.push(lock, sent[i]!, lock.ctr);
  }
  await waitUntil('three events in flight', () => ingest.depth === 3);
  assert.equal(await value(metrics, 'oti_ingest_queue_depth'), 3);
  driver.release();
  await waitUntil('three acks', () => driver.answers.length === 3);
  await waitUntil('depth back to 0', () => ingest.depth === 0);
  assert.equal(await value(metrics, 'oti_ingest_queue_depth'), 0);

  // A duplicate, and an event of a lock that is not enrolled.
  driver.push(lock, sent[0]!, 1);
  const ghost = enrollLock(site, 'ghost');
  driver.push(ghost, signedEvent(ghost), 1);
  await waitUntil('five answers', () => driver.answers.length === 5);
  assert.deepEqual(driver.answers.slice(3).map((a) => `${a.lock}:${a.ctr} ${a.code ?? 'ack'}`).sort(), ['front:1 ack', 'ghost:1 ERR_LOCK_UNKNOWN']);

  assert.equal(await value(metrics, 'oti_events_received_total'), 5);
  assert.equal(await value(metrics, 'oti_events_committed_total'), 3);
  assert.equal(await value(metrics, 'oti_events_duplicate_total'), 1);
  assert.equal(await value(metrics, 'oti_events_rejected_total', { code: 'ERR_LOCK_UNKNOWN' }), 1);
  assert.equal(await value(metrics, 'oti_unenrolled_lock_reports_total'), 1);
  const hist = (await metrics.registry.getSingleMetric('oti_ack_latency_seconds')!.get()).values as readonly Sample[];
  assert.equal(hist.find((v) => v.metricName === 'oti_ack_latency_seconds_count')?.value, 3);
  const buckets = hist.filter((v) => v.metricName === 'oti_ack_latency_seconds_bucket').map((v) => v.labels['le']);
  assert.equal(buckets[0], 0.001);
  assert.ok(buckets.includes(1));

  // Detached: nothing more is counted.
  detach();
  driver.push(lock, signedEvent(lock), lock.ctr);
  await waitUntil('sixth answer', () => driver.answers.length === 6);
  assert.equal(await value(metrics, 'oti_events_received_total'), 5);
  assert.equal(await value(metrics, 'oti_events_committed_total'), 3);
});

void test('chain heights, driver and peer states come from their providers at each scrape', async () => {
  const metrics = new GatewayMetrics();
  const drivers: DriverStatus[] = [];
  const peers: { peer: string; state: string }[] = [];
  let peerSize = 10;
  metrics.setChainHeight('oti/site-1/gw-1', 42);
  metrics.chainHeightsFrom(() => [{ origin: 'oti/site-1/gw-2', size: peerSize }]);
  metrics.driversFrom(() => drivers);
  metrics.peersFrom(() => peers);
  assert.equal(await value(metrics, 'oti_chain_entries', { chain: 'oti/site-1/gw-1' }), 42);
  assert.equal(await value(metrics, 'oti_chain_entries', { chain: 'oti/site-1/gw-2' }), 10);
  peerSize = 11;
  assert.equal(await value(metrics, 'oti_chain_entries', { chain: 'oti/site-1/gw-2' }), 11);
  // No peers yet (the sync layer fills them in): no series at all.
  assert.equal((await metrics.registry.getSingleMetric('oti_peer_state')!.get()).values.length, 0);
  const counters = { framesIn: 0, framesRejected: 0, eventsIn: 0, acksOut: 0, nacksOut: 0, reconnects: 0 };
  drivers.push(
    { driver: 'serial:/dev/ttyA', state: 'running', since: 0, links: [{ link: '/dev/ttyA', state: 'open' }], counters },
    { driver: 'ble', state: 'unavailable', reason: 'no adapter', since: 0, links: [], counters },
  );
  peers.push({ peer: 'gw-2', state: 'syncing' });
  assert.equal(await value(metrics, 'oti_driver_up', { driver: 'serial:/dev/ttyA', state: 'running' }), 1);
  assert.equal(await value(metrics, 'oti_driver_up', { driver: 'ble', state: 'unavailable' }), 0);
  assert.equal(await value(metrics, 'oti_driver_links_open', { driver: 'serial:/dev/ttyA' }), 1);
  assert.equal(await value(metrics, 'oti_peer_state', { peer: 'gw-2', state: 'syncing' }), 1);
  // A state change replaces the series rather than adding one.
  drivers[0] = { ...drivers[0]!, state: 'degraded' };
  const up = (await metrics.registry.getSingleMetric('oti_driver_up')!.get()).values;
  assert.deepEqual(up.map((v) => [v.labels['driver'], v.labels['state'], v.value]), [['serial:/dev/ttyA', 'degraded', 1], ['ble', 'unavailable', 0]]);
});

void test('two instances keep separate registries', async () => {
  const a = new GatewayMetrics();
  const b = new GatewayMetrics();
  a.setChainHeight('oti/s/a', 1);
  assert.equal(await value(a, 'oti_chain_entries', { chain: 'oti/s/a' }), 1);
  assert.equal(await value(b, 'oti_chain_entries', { chain: 'oti/s/a' }), undefined);
  assert.match(await a.registry.metrics(), /^# HELP oti_/);
});
