/**
 * Builds test/support/go-tlog (Google's golang.org/x/mod/sumdb/note and sumdb/tlog from Debian's
 * golang-golang-x-mod-dev, in GOPATH mode) for the tests that check this project's tiles,
 * checkpoints, cosignatures and tlog-proofs with code nobody here wrote; missingGo says why it
 * cannot be built here (then those tests are skipped with that reason).
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './oti-cli.js';
import { cosignatureKeyId } from '../../gateway/sync/witness.js';
import { keyHash } from '../../ledger/checkpoint.js';

const GOPATH = '/usr/share/gocode';

export function missingGo(): string | undefined {
  if (spawnSync('go', ['version']).status !== 0) return '`go` is not installed (apt-get install golang-go golang-golang-x-mod-dev)';
  if (!existsSync(join(GOPATH, 'src/golang.org/x/mod/sumdb/tlog'))) return `golang.org/x/mod is not in ${GOPATH} (apt-get install golang-golang-x-mod-dev)`;
  return undefined;
}

/** Builds test/support/go-tlog in a temp GOPATH-mode tree under `dir`; returns the binary's path. */
export async function buildGoTlog(dir: string): Promise<string> {
  const src = join(dir, 'src', 'gotlog');
  await mkdir(src, { recursive: true });
  await copyFile(join(ROOT, 'test', 'support', 'go-tlog', 'main.go'), join(src, 'main.go'));
  const bin = join(dir, 'go-tlog');
  await promisify(execFile)('go', ['build', '-o', bin, '.'], { cwd: src, env: { ...process.env, GO111MODULE: 'off', GOPATH, GOCACHE: join(dir, 'gocache'), GOFLAGS: '' } });
  return bin;
}

/** A gateway's signed-note verifier key (Ed25519, type 0x01) for key name `origin`. */
export function noteVerifierKey(origin: string, publicKey: Uint8Array): string {
  return `${origin}+${Buffer.from(keyHash(origin, publicKey)).toString('hex')}+${Buffer.concat([Buffer.of(1), publicKey]).toString('base64')}`;
}

/** A witness's C2SP tlog-cosignature verifier key (type 0x04) for key name `name`. */
export function cosignerVerifierKey(name: string, publicKey: Uint8Array): string {
  return `${name}+${Buffer.from(cosignatureKeyId(name, publicKey)).toString('hex')}+${Buffer.concat([Buffer.of(4), publicKey]).toString('base64')}`;
}
