/**
 * Telling a full disk from other write failures (ledger/diskspace.ts). The ENOSPC comes from the
 * kernel (/dev/full); LevelDB's errors are shaped as classic-level reports them (code
 * LEVEL_IO_ERROR, LevelDB's "IO error: <file>: <strerror>" text, wrapped as the cause of
 * abstract-level's error when the database is opened).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tempDir } from '../support/site.js';
import { hasSpaceErrno, isDiskFull, probeSpace, spaceRetryDelay, SPACE_RETRY_MAX_MS, SPACE_RETRY_MIN_MS } from '../../ledger/diskspace.js';

function levelIoError(text: string): Error {
  return Object.assign(new Error(`IO error: /data/ledger/000005.log: ${text}`), { code: 'LEVEL_IO_ERROR' });
}

void test('a write to a full device (ENOSPC from the kernel) is a full disk, also as the cause of another error', { skip: existsSync('/dev/full') ? false : 'no /dev/full here' }, async (t) => {
  const dir = await tempDir(t);
  const e = await writeFile('/dev/full', 'x').then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(hasSpaceErrno(e));
  assert.ok(hasSpaceErrno(new Error('wrapped', { cause: e })));
  assert.ok(await isDiskFull(e, dir));
});

void test('a LevelDB I/O error is a full disk when its strerror says so, or when the folder has no room; else not', async (t) => {
  const dir = await tempDir(t);
  assert.ok(await isDiskFull(levelIoError('No space left on device'), dir));
  assert.ok(await isDiskFull(levelIoError('Disk quota exceeded'), dir));
  const opening = Object.assign(new Error('Database failed to open', { cause: levelIoError('No space left on device') }), { code: 'LEVEL_DATABASE_NOT_OPEN' });
  assert.ok(await isDiskFull(opening, dir));
  // This folder has room: another I/O error stays what it is.
  assert.ok(await probeSpace(dir));
  assert.equal(await isDiskFull(levelIoError('Input/output error'), dir), false);
  assert.equal(await isDiskFull(Object.assign(new Error('Corruption: bad block'), { code: 'LEVEL_CORRUPTION' }), dir), false);
  assert.equal(await isDiskFull(new Error('anything else'), dir), false);
});

void test('the probe backoff doubles from its minimum and stays at its maximum', () => {
  assert.equal(spaceRetryDelay(0), SPACE_RETRY_MIN_MS);
  assert.equal(spaceRetryDelay(1), 2 * SPACE_RETRY_MIN_MS);
  assert.equal(spaceRetryDelay(50), SPACE_RETRY_MAX_MS);
  for (let i = 1; i < 60; i++) assert.ok(spaceRetryDelay(i) >= spaceRetryDelay(i - 1) && spaceRetryDelay(i) <= SPACE_RETRY_MAX_MS);
});
