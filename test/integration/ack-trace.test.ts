/**
 * bench/ack-trace.ts, the trace phase's timestamps on the gateway's ack path: it wraps methods of
 * the serial driver and the ingest pipeline by name, so a renamed method must fail here rather
 * than in a benchmark run (it once did: `acked` became `ack` and the phase found no trace file).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TRACE_MODULE = new URL('../../bench/ack-trace.js', import.meta.url).href;

void test('the ack-path trace finds every method it times and writes its trace when the process exits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'oti-ack-trace-'));
  try {
    const out = join(dir, 'trace.json');
    const r = spawnSync(process.execPath, ['--import', TRACE_MODULE, '-e', ''], { env: { ...process.env, OTI_ACK_TRACE: out }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const trace = JSON.parse(readFileSync(out, 'utf8')) as { events: unknown; loop: { stalls: unknown[] } };
    assert.deepEqual(trace.events, {});
    assert.ok(Array.isArray(trace.loop.stalls));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
