/**
 * `oti backup` / `oti restore`: the whole gateway data folder (identity, keys, ledger, state) in
 * one file encrypted under a passphrase. docs/CLI.md §Backups.
 *
 *   file      = magic "OTIBAK01" || u32 BE header length || header || ciphertext || tag(16)
 *   header    = UTF-8 JSON { "format": "oti-backup", "version": 1, "kdf": "scrypt", "N", "r",
 *               "p", "salt": b64(16), "cipher": "aes-256-gcm", "nonce": b64(12), "created",
 *               "check": b64(HMAC-SHA256(key, "OTI-v1 backup passphrase check")[0..16]) }
 *   plaintext = record* || u16 0
 *   record    = u16 BE path length || path (UTF-8, relative, "/"-separated) || u32 BE mode
 *               || u64 BE size || size bytes
 *
 * The key is scrypt(NFC passphrase, salt, N, r, p) as for key files (ledger/keyfile.ts); the
 * header is the AEAD's associated data, so any change to it or to the ciphertext fails the tag.
 * The check value tells a wrong passphrase apart from an altered file before anything is
 * decrypted. Restore extracts into a temporary folder next to the target and moves it into place only
 * after the tag verified: a wrong passphrase or an altered file (ERR_BACKUP) leaves nothing.
 *
 * Consistency: backup opens the ledger itself first, which takes LevelDB's exclusive lock, and
 * holds it while copying, so nothing can write meanwhile. When a running gateway holds the lock,
 * the backup is written from a consistent copy of the data folder instead (`snapshotDataDir`,
 * the same copy `oti verify` opens): whole blocks up to the moment of the copy.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, lstat, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, sep, basename } from 'node:path';
import { OtiError, isOtiError } from '../ledger/base/errors.js';
import { errnoCode } from '../ledger/base/files.js';
import { flag, str, type Command, type Outcome, type Parsed } from './command.js';
import type { Terminal } from './terminal.js';
import { existingLedger, openLedger, snapshotDataDir, type OpenedLedger } from './ledger-access.js';
import { keepNewerRecord } from '../gateway/sync/checkpoint-record.js';

const MAGIC = Buffer.from('OTIBAK01', 'latin1');
const HEADER_MAX = 4096;
const SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;
const MAX_PATH = 4096;
const MAX_FILES = 1_000_000;
const TAG = 16;

interface Header {
  format: 'oti-backup';
  version: 1;
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  cipher: 'aes-256-gcm';
  nonce: string;
  created: string;
  check: string;
}

function passphraseCheck(key: Buffer): string {
  return createHmac('sha256', key).update('OTI-v1 backup passphrase check').digest().subarray(0, 16).toString('base64');
}

function deriveKey(passphrase: string, h: Header): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(Buffer.from(passphrase.normalize('NFC'), 'utf8'), Buffer.from(h.salt, 'base64'), 32, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r }, (err, key) => (err !== null ? reject(err) : resolve(key)));
  });
}

function backupError(path: string, why: string): OtiError {
  return new OtiError('ERR_BACKUP', `${path}: ${why}`, { path });
}

/** Regular files under `root`, relative, sorted; symlinks and other kinds are skipped. */
async function listFiles(root: string, skip: (rel: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, d.name);
      const rel = relative(root, full).split(sep).join('/');
      if (d.isDirectory()) await walk(full);
      else if (d.isFile() && !skip(rel)) out.push(rel);
      if (out.length > MAX_FILES) throw new OtiError('ERR_ARGUMENT', `more than ${MAX_FILES} files in ${root}`);
    }
  };
  await walk(root);
  return out.sort();
}

/**
 * The folder to read a backup from: `data` itself with its ledger held open (so no process writes
 * it meanwhile), or, when a running gateway holds the ledger, a consistent copy of it.
 */
async function holdDataDir(data: string): Promise<{ dir: string; live: boolean; close(): Promise<void> }> {
  let ledger: OpenedLedger | undefined;
  try {
    // A folder without a usable ledger is backed up as it is (LevelDB would create one).
    ledger = await existingLedger(data).then(
      () => openLedger(data, { copyIfLocked: false }),
      () => undefined,
    );
  } catch (e) {
    if (!isOtiError(e, 'ERR_STORE_LOCKED')) throw e;
    const snap = await snapshotDataDir(data);
    return { dir: snap.dir, live: true, close: () => snap.close() };
  }
  return { dir: data, live: false, close: async () => ledger?.close() };
}

/** ERR_NOT_FOUND unless `data` is a folder: a mistyped --data is said as such, not as a raw ENOENT. */
async function requireDataDir(data: string): Promise<void> {
  const st = await stat(data).catch(() => undefined);
  if (st === undefined) throw new OtiError('ERR_NOT_FOUND', `no data folder ${data}: --data names the gateway's data folder (installed: /var/lib/oti-gateway)`, { path: data });
  if (!st.isDirectory()) throw new OtiError('ERR_ARGUMENT', `${data} is not a folder: --data names the gateway's data folder (installed: /var/lib/oti-gateway)`, { path: data });
}

type OutProblem = 'EEXIST' | 'ENOENT' | 'EISDIR' | 'EACCES';

function outError(out: string, problem: OutProblem, errno: string = problem): OtiError {
  if (problem === 'EEXIST') return new OtiError('ERR_ARGUMENT', `${out} already exists; choose another --out, or add --force to overwrite it`, { path: out });
  if (problem === 'ENOENT') return new OtiError('ERR_NOT_FOUND', `cannot write ${out}: the folder ${dirname(out)} does not exist; create it or choose another --out`, { path: out });
  if (problem === 'EISDIR') return new OtiError('ERR_ARGUMENT', `${out} is a folder; --out names the backup file to write, e.g. ${join(out, 'gateway.otibak')}`, { path: out });
  return new OtiError('ERR_ARGUMENT', `cannot write ${out} (${errno}): choose a --out this user may write`, { path: out });
}

/** The problem an errno of open(--out) stands for, if it is one of a wrong --out. */
function outProblem(errno: string | undefined): OutProblem | undefined {
  if (errno === 'EEXIST' || errno === 'EISDIR') return errno;
  if (errno === 'ENOENT' || errno === 'ENOTDIR') return 'ENOENT';
  if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') return 'EACCES';
  return undefined;
}

/** Refuses a --out that cannot be written, before anything is copied or a passphrase asked for. */
async function checkOut(out: string, force: boolean): Promise<void> {
  const st = await lstat(out).catch(() => undefined);
  if (st?.isDirectory() === true) throw outError(out, 'EISDIR');
  if (st !== undefined && !force) throw outError(out, 'EEXIST');
  if ((await stat(dirname(out)).catch(() => undefined))?.isDirectory() !== true) throw outError(out, 'ENOENT');
}

/** Opens the backup file to write (0600), with a coded error for each reason it cannot be. */
async function openOut(out: string, force: boolean): Promise<FileHandle> {
  try {
    return await open(out, force ? 'w' : 'wx', 0o600);
  } catch (e) {
    const errno = errnoCode(e);
    const problem = outProblem(errno);
    throw problem !== undefined ? outError(out, problem, errno) : e;
  }
}

const backup: Command = {
  name: 'backup',
  summary: 'Write the gateway data folder (keys, identity, ledger) to one passphrase-encrypted file.',
  details: ['Works while the gateway runs: the ledger is then copied as `oti verify` copies it (whole blocks up to the moment of the copy) and the backup is written from that copy, in the temporary folder ($TMPDIR), which needs room for one copy of the data folder.'],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder' },
    out: { type: 'string', value: 'FILE', help: 'the backup file to write (0600)' },
    force: { type: 'boolean', help: 'overwrite FILE if it exists' },
    'passphrase-file': { type: 'string', value: 'FILE', help: 'backup passphrase from FILE (else $OTI_BACKUP_PASSPHRASE, else a prompt)' },
  },
  examples: ['sudo -u oti oti backup --data /var/lib/oti-gateway --out /media/usb/gw-lobby.otibak', 'OTI_BACKUP_PASSPHRASE=... oti backup --data ./data --out gw.otibak --json'],
  async run(p, term) {
    const data = str(p, 'data', true);
    const out = str(p, 'out', true);
    await requireDataDir(data);
    await checkOut(out, flag(p, 'force'));
    const source = await holdDataDir(data);
    try {
      const files = await listFiles(source.dir, (rel) => rel === 'ledger/LOCK');
      const passphrase = await term.passphrase({ file: str(p, 'passphrase-file'), env: 'OTI_BACKUP_PASSPHRASE', purpose: 'backup', confirm: true });
      const params = { format: 'oti-backup', version: 1, kdf: 'scrypt', ...SCRYPT, salt: randomBytes(16).toString('base64'), cipher: 'aes-256-gcm', nonce: randomBytes(12).toString('base64'), created: new Date().toISOString() } as const;
      const key = await deriveKey(passphrase, { ...params, check: '' });
      const header: Header = { ...params, check: passphraseCheck(key) };
      const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
      const cipher = createCipheriv('aes-256-gcm', key, Buffer.from(header.nonce, 'base64'));
      key.fill(0);
      cipher.setAAD(headerBytes);
      const fh = await openOut(out, flag(p, 'force'));
      let total = 0;
      try {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(headerBytes.length);
        await fh.write(Buffer.concat([MAGIC, len, headerBytes]));
        const sizes = await Promise.all(files.map(async (f) => (await stat(join(source.dir, f))).size));
        const grand = sizes.reduce((a, b) => a + b, 0);
        const bar = term.progress('backup');
        for (const [i, rel] of files.entries()) {
          const st = await stat(join(source.dir, rel));
          const name = Buffer.from(rel, 'utf8');
          const rec = Buffer.alloc(2 + name.length + 4 + 8);
          rec.writeUInt16BE(name.length, 0);
          name.copy(rec, 2);
          rec.writeUInt32BE(st.mode & 0o777, 2 + name.length);
          rec.writeBigUInt64BE(BigInt(st.size), 6 + name.length);
          await fh.write(cipher.update(rec));
          let copied = 0;
          if (st.size > 0) {
            for await (const chunk of createReadStream(join(source.dir, rel), { start: 0, end: st.size - 1 })) {
              copied += (chunk as Buffer).length;
              await fh.write(cipher.update(chunk as Buffer));
            }
          }
          if (copied !== st.size) throw new OtiError('ERR_ARGUMENT', `${rel} changed size during the backup; is the gateway stopped?`);
          total += st.size;
          bar.update(total, grand, `${i + 1}/${files.length} files`);
        }
        bar.end();
        await fh.write(cipher.update(Buffer.alloc(2)));
        await fh.write(Buffer.concat([cipher.final(), cipher.getAuthTag()]));
        await fh.sync();
      } catch (e) {
        await fh.close();
        await rm(out, { force: true });
        throw e;
      }
      await fh.close();
      return { json: { data, out, files: files.length, bytes: total, live: source.live }, text: [`backed up ${files.length} files (${total} bytes) from ${data}${source.live ? ' (a copy taken while the gateway runs)' : ''} to ${out} (encrypted, 0600)`] };
    } finally {
      await source.close();
    }
  },
};

/** Reads exactly the decrypted stream as records; writes them under `root`. */
class Extractor {
  #buf: Buffer = Buffer.alloc(0);
  #file: { fh: FileHandle; left: number } | undefined;
  #count = 0;
  done = false;
  readonly #root: string;
  readonly #src: string;

  constructor(root: string, src: string) {
    this.#root = root;
    this.#src = src;
  }

  get count(): number {
    return this.#count;
  }

  async push(chunk: Buffer): Promise<void> {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      if (this.#file !== undefined) {
        const n = Math.min(this.#file.left, this.#buf.length);
        if (n > 0) await this.#file.fh.write(this.#buf.subarray(0, n));
        this.#buf = this.#buf.subarray(n);
        this.#file.left -= n;
        if (this.#file.left > 0) return;
        await this.#file.fh.sync();
        await this.#file.fh.close();
        this.#file = undefined;
        continue;
      }
      if (this.done) {
        if (this.#buf.length > 0) throw backupError(this.#src, 'has data after its end marker');
        return;
      }
      if (this.#buf.length < 2) return;
      const nameLen = this.#buf.readUInt16BE(0);
      if (nameLen === 0) {
        this.done = true;
        this.#buf = this.#buf.subarray(2);
        continue;
      }
      if (nameLen > MAX_PATH) throw backupError(this.#src, 'has a path longer than 4096 bytes');
      if (this.#buf.length < 2 + nameLen + 12) return;
      const rel = this.#buf.subarray(2, 2 + nameLen).toString('utf8');
      const mode = this.#buf.readUInt32BE(2 + nameLen) & 0o777;
      const size = Number(this.#buf.readBigUInt64BE(6 + nameLen));
      if (rel.startsWith('/') || rel.split('/').some((s) => s === '' || s === '.' || s === '..') || rel.includes('\u0000')) throw backupError(this.#src, `has an unsafe path "${rel.slice(0, 80)}"`);
      if (!Number.isSafeInteger(size)) throw backupError(this.#src, 'has a file size out of range');
      if (++this.#count > MAX_FILES) throw backupError(this.#src, 'has too many files');
      this.#buf = this.#buf.subarray(2 + nameLen + 12);
      const target = join(this.#root, ...rel.split('/'));
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      const fh = await open(target, 'wx', mode);
      await fh.chmod(mode);
      this.#file = { fh, left: size };
    }
  }

  async close(): Promise<void> {
    await this.#file?.fh.close();
    this.#file = undefined;
  }
}

const restore: Command = {
  name: 'restore',
  summary: 'Restore a gateway data folder from a backup file (checks the passphrase and integrity first).',
  details: [
    'Stop the gateway first: while a gateway holds the data folder’s ledger the restore is refused (ERR_STORE_LOCKED) and nothing is changed. An existing data folder is kept as <DIR>.before-restore-<time> (with --force and a confirmation).',
    'A gateway restored from an older backup must not append before it recovers its newer chain tip from peers: the replaced folder’s last-checkpoint.json is kept when it records a longer chain of the same gateway (docs/SYNC.md §Recovery of the own chain).',
  ],
  positionals: [{ name: 'FILE', help: 'a backup written by oti backup' }],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder to restore into' },
    force: { type: 'boolean', help: 'replace an existing data folder (it is moved aside, not deleted)' },
    yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' },
    'passphrase-file': { type: 'string', value: 'FILE', help: 'backup passphrase from FILE (else $OTI_BACKUP_PASSPHRASE, else a prompt)' },
  },
  examples: ['sudo -u oti oti restore /media/usb/gw-lobby.otibak --data /var/lib/oti-gateway --force', 'OTI_BACKUP_PASSPHRASE=... oti restore gw.otibak --data ./data --json'],
  async run(p, term) {
    const file = p.positionals[0] as string;
    const data = str(p, 'data', true);
    const existing = await lstat(data).catch(() => undefined);
    const nonEmpty = existing !== undefined && (!existing.isDirectory() || (await readdir(data)).length > 0);
    if (nonEmpty && !flag(p, 'force')) throw new OtiError('ERR_ARGUMENT', `${data} exists and is not empty; restore with --force to move it aside`, { path: data });
    // Held until the folder is moved aside: a running gateway (or one starting meanwhile) would
    // go on writing into the folder moved aside, and the restored one would lack what it wrote.
    const held = nonEmpty ? await holdForRestore(data) : undefined;
    try {
      return await restoreInto(p, term, file, data, existing !== undefined, nonEmpty);
    } finally {
      await held?.close();
    }
  },
};

/**
 * Holds the ledger of the data folder a restore replaces (ERR_STORE_LOCKED while a gateway runs
 * on it). A folder whose ledger is missing or does not open (the damage a restore repairs) is
 * held by nobody: undefined.
 */
async function holdForRestore(data: string): Promise<OpenedLedger | undefined> {
  try {
    await existingLedger(data);
  } catch {
    return undefined;
  }
  try {
    return await openLedger(data, { copyIfLocked: false });
  } catch (e) {
    if (isOtiError(e, 'ERR_STORE_LOCKED')) {
      throw new OtiError('ERR_STORE_LOCKED', `a running gateway holds the ledger in ${data}; stop it first (systemctl stop oti-gateway), restore, then start it; nothing was changed`, { path: data }, { cause: e });
    }
    return undefined;
  }
}

async function restoreInto(p: Parsed, term: Terminal, file: string, data: string, existing: boolean, nonEmpty: boolean): Promise<Outcome> {
  const st = await stat(file).catch(() => undefined);
  if (st === undefined) throw new OtiError('ERR_NOT_FOUND', `no file ${file}`);
  const head = await open(file, 'r');
  let header: Header;
  let headerBytes: Buffer;
  let start: number;
  try {
    const pre = Buffer.alloc(12);
    await head.read(pre, 0, 12, 0);
    if (!pre.subarray(0, 8).equals(MAGIC)) throw backupError(file, 'is not an OTI backup');
    const n = pre.readUInt32BE(8);
    if (n > HEADER_MAX || 12 + n + TAG + 2 > st.size) throw backupError(file, 'has a bad header length');
    headerBytes = Buffer.alloc(n);
    await head.read(headerBytes, 0, n, 12);
    start = 12 + n;
    header = parseHeader(file, headerBytes);
  } finally {
    await head.close();
  }
  if (nonEmpty) await term.confirm(`Replace the data folder ${data} (it is moved aside) with the backup from ${header.created}?`, flag(p, 'yes'));
  const passphrase = await term.passphrase({ file: str(p, 'passphrase-file'), env: 'OTI_BACKUP_PASSPHRASE', purpose: 'backup' });
  const key = await deriveKey(passphrase, header);
  if (!timingSafeEqual(Buffer.from(passphraseCheck(key), 'base64'), Buffer.from(header.check, 'base64'))) {
    key.fill(0);
    throw backupError(file, 'wrong passphrase');
  }
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(header.nonce, 'base64'));
  key.fill(0);
  decipher.setAAD(headerBytes);
  const tag = Buffer.alloc(TAG);
  const tfh = await open(file, 'r');
  await tfh.read(tag, 0, TAG, st.size - TAG);
  await tfh.close();
  decipher.setAuthTag(tag);
  const tmp = join(dirname(data), `.${basename(data)}.restoring-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { mode: 0o700 });
  const ex = new Extractor(tmp, file);
  const bar = term.progress('restore');
  try {
    let read = 0;
    const total = st.size - TAG - start;
    for await (const chunk of createReadStream(file, { start, end: st.size - TAG - 1 })) {
      read += (chunk as Buffer).length;
      await ex.push(decipher.update(chunk as Buffer));
      bar.update(read, total);
    }
    try {
      await ex.push(decipher.final());
    } catch {
      throw backupError(file, 'the file was altered or is damaged (authentication tag mismatch)');
    }
    if (!ex.done) throw backupError(file, 'is truncated');
  } catch (e) {
    await ex.close();
    await rm(tmp, { recursive: true, force: true });
    // The tag is checked only at final(), so an altered file may first show as bad records.
    if (e instanceof OtiError && e.code !== 'ERR_BACKUP') throw backupError(file, `the file was altered or is damaged (${e.message})`);
    throw e;
  } finally {
    bar.end();
  }
  let movedAside: string | undefined;
  if (existing) {
    if (nonEmpty) {
      movedAside = `${data}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(data, movedAside);
    } else {
      await rm(data, { recursive: true });
    }
  }
  // The replaced folder's record of a longer chain is kept: the older ledger is then recovered
  // from peers before the gateway appends (docs/SYNC.md §Recovery of the own chain).
  const keptRecord = movedAside !== undefined ? await keepNewerRecord(movedAside, tmp) : undefined;
  await rename(tmp, data);
  return {
    json: { data, files: ex.count, movedAside: movedAside ?? null, created: header.created, keptRecord: keptRecord ?? null },
    text: [
      `restored ${ex.count} files into ${data} (backup of ${header.created})`,
      ...(movedAside !== undefined ? [`the previous data folder is in ${movedAside}`] : []),
      ...(keptRecord !== undefined ? [`kept its last-checkpoint record (${keptRecord} entries): the gateway recovers the newer entries from its peers before it appends, and waits for them (ERR_LEDGER_LOST) if none has them`] : []),
    ],
  };
}

function parseHeader(file: string, b: Buffer): Header {
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw backupError(file, 'has a header that is not JSON');
  }
  const okN = typeof h.N === 'number' && Number.isInteger(Math.log2(h.N)) && h.N >= 2 ** 10 && h.N <= 2 ** 20;
  if (h.format !== 'oti-backup' || h.version !== 1 || h.kdf !== 'scrypt' || !okN || h.r !== 8 || h.p !== 1 || h.cipher !== 'aes-256-gcm') throw backupError(file, 'has an unknown header');
  if (typeof h.salt !== 'string' || Buffer.from(h.salt, 'base64').length !== 16 || typeof h.nonce !== 'string' || Buffer.from(h.nonce, 'base64').length !== 12 || typeof h.created !== 'string' || typeof h.check !== 'string' || Buffer.from(h.check, 'base64').length !== 16) {
    throw backupError(file, 'has a malformed header');
  }
  return h as unknown as Header;
}

export const backupCommands: readonly Command[] = [backup, restore];
