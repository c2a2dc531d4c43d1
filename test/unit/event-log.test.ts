/**
 * gateway/event-log.ts against the real ingest pipeline: refused frames are visible at info,
 * once a minute per link and code with the number left out, and counted by code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { makeSite, openChain } from '../support/site.js';
import { Ingest } from '../../gateway/ingest.js';
import { logIngest } from '../../gateway/event-log.js';
import { GatewayMetrics } from '../../gateway/api/metrics.js';

interface Line {
  level: number;
  msg: string;
  code?: string;
  link?: string;
  suppressed?: number;
}

void test('refused frames: at info once a minute per link and code, with the count left out; counted by code', async (t) => {
  const { chain } = await openChain(t, makeSite());
  const ingest = new Ingest({ chain });
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done): void {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  let now = 0;
  const stop = logIngest(ingest, pino({ level: 'info' }, sink), () => now);
  t.after(stop);
  const metrics = new GatewayMetrics();
  t.after(metrics.observeIngest(ingest));
  const reject = (link: string, code: string): void => {
    ingest.emit('notice', { kind: 'rejected', from: { driver: 'serial', link }, code, detail: 'the CRC-32 does not match', time: now });
  };
  // A lock on the wrong baud rate: a thousand bad frames on one port.
  for (let i = 0; i < 1000; i++) reject('/dev/ttyUSB0', 'ERR_FRAME_CRC');
  reject('/dev/ttyUSB0', 'ERR_FRAME_MALFORMED');
  reject('/dev/ttyUSB1', 'ERR_FRAME_CRC');
  // Off the registered codes, the metric's label set stays bounded.
  reject('/dev/ttyUSB1', 'ERR_NOT_A_CODE');
  const info = (): Line[] => lines.filter((l) => l.level === 30);
  assert.deepEqual(info().map((l) => [l.link, l.code, l.suppressed]), [['/dev/ttyUSB0', 'ERR_FRAME_CRC', 0], ['/dev/ttyUSB0', 'ERR_FRAME_MALFORMED', 0], ['/dev/ttyUSB1', 'ERR_FRAME_CRC', 0], ['/dev/ttyUSB1', 'ERR_NOT_A_CODE', 0]]);
  now += 60_000;
  reject('/dev/ttyUSB0', 'ERR_FRAME_CRC');
  assert.equal(info().length, 5);
  assert.equal(info()[4]!.suppressed, 999);
  assert.match(info()[4]!.msg, /and 999 more ERR_FRAME_CRC on this link since the last such line/);
  const text = await metrics.registry.metrics();
  assert.match(text, /oti_driver_notices_total\{driver="serial",kind="rejected",code="ERR_FRAME_CRC"\} 1002/);
  assert.match(text, /oti_driver_notices_total\{driver="serial",kind="rejected",code="ERR_INTERNAL"\} 1/);
  assert.doesNotMatch(text, /ERR_NOT_A_CODE/);
});
