import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { readFailed } from '../../ledger/store-codec.js';
import { parseCheckpoint } from '../../ledger/checkpoint.js';
import { isOtiError } from '../../ledger/base/errors.js';

void test('a read failure named by what was read keeps its code and says its reason once, in the log too', () => {
  let reason: unknown;
  try {
    parseCheckpoint('oti/site-1/gw-1\n5\nAAAA\u0001\n');
  } catch (e) {
    reason = e;
  }
  assert.ok(isOtiError(reason));
  const e = readFailed('stored block 3 of oti/site-1/gw-1', readFailed('its checkpoint', reason));
  assert.ok(isOtiError(e, reason.code));
  assert.equal(e.message, `stored block 3 of oti/site-1/gw-1: its checkpoint: ${reason.message}`);
  // What the gateway's log writes for it (pino's err serializer appends the message of every cause).
  assert.equal(pino.stdSerializers.err(e).message, e.message);
  const level = readFailed('stored block 4', Object.assign(new Error('Corruption: block checksum mismatch'), { code: 'LEVEL_CORRUPTION' }));
  assert.ok(isOtiError(level, 'ERR_STORE_CORRUPT'));
  assert.equal(pino.stdSerializers.err(level).message, 'stored block 4 cannot be read: LevelDB reports "Corruption: block checksum mismatch"');
});
