/**
 * The Home Assistant bridge against a real chain: a flood of `online` births on
 * `homeassistant/status` republishes the discovery configs (coalesced) and logs one line a minute,
 * with the number of births left out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { makeSite, enrollLock, openChain } from '../support/site.js';
import { Ingest } from '../../gateway/ingest.js';
import { HomeAssistantBridge } from '../../gateway/notify/homeassistant.js';
import { TopicMap } from '../../gateway/broker/topics.js';

void test('thousands of Home Assistant births log one line a minute, counted', async (t) => {
  const site = makeSite();
  const { chain } = await openChain(t, site, { sealDelayMs: 1 });
  await chain.append({ kind: 'roster', signed: enrollLock(site, 'front').statement });
  const lines: { msg: string; suppressed?: number }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done): void {
      lines.push(JSON.parse(chunk.toString()) as { msg: string; suppressed?: number });
      done();
    },
  });
  const published: string[] = [];
  let now = 0;
  const bridge = new HomeAssistantBridge({
    out: { publish: (topic) => Promise.resolve(void published.push(topic)) },
    topics: new TopicMap(site.trust.siteId),
    chain,
    ingest: new Ingest({ chain }),
    gatewayId: 'gw-1',
    logger: pino({ level: 'info' }, sink),
    now: () => now,
  });
  await bridge.start();
  t.after(() => bridge.stop());
  const configs = published.length;
  assert.ok(configs > 0);
  for (let i = 0; i < 4500; i++) bridge.birth('online');
  await bridge.idle();
  // The configs were published again (coalesced, so far fewer than 4,500 times).
  assert.ok(published.length > configs && published.length <= configs * 3, String(published.length));
  const born = (): { msg: string; suppressed?: number }[] => lines.filter((l) => l.msg.startsWith('Home Assistant is online'));
  assert.equal(born().length, 1);
  now += 60_000;
  bridge.birth('online');
  await bridge.idle();
  assert.equal(born().length, 2);
  assert.equal(born()[1]!.suppressed, 4499);
  assert.match(born()[1]!.msg, /and 4499 more births since the last such line/);
});
