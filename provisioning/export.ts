/**
 * `oti export`: writes the chains of a gateway data folder as C2SP tlog-tiles static trees, one
 * per chain under `<out>/<origin>/`, with the same paths as the local API's `/tlog/<origin>/`
 * (gateway/api/tlog-routes.ts, docs/PROTOCOL.md §Tiles), so any web server or object store can serve
 * them. The checkpoint is written last: a reader never finds a checkpoint whose tiles are not
 * there yet.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OtiError } from '../ledger/base/errors.js';
import { leafHash } from '../ledger/merkle.js';
import type { ChainReader } from '../ledger/reader.js';
import { writeFileAtomic } from '../ledger/base/files.js';
import { blockResources, encodeBundle, encodeHashTile, tilePath, treeResources, TILE_WIDTH, type TileResource } from '../ledger/tiles.js';
import { chainCheckpoint, readTile } from '../ledger/tile-source.js';
import { str, type Command } from './command.js';
import { withLedger } from './ledger-access.js';

export interface ExportReport {
  readonly origin: string;
  readonly size: number;
  readonly blocks: number;
  readonly files: number;
  readonly bytes: number;
}

/** Writes one chain's tree under `dir` (the chain's prefix); returns what was written. */
export async function exportChain(cs: ChainReader, dir: string, onProgress?: (done: number, size: number) => void): Promise<ExportReport> {
  const checkpoint = await chainCheckpoint(cs);
  const { size, n } = cs.head;
  let files = 0;
  let bytes = 0;
  const put = async (r: TileResource, body: Uint8Array): Promise<void> => {
    const path = join(dir, tilePath(r));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, body);
    files++;
    bytes += body.length;
  };
  for (const r of treeResources(size)) {
    if (r.kind === 'entries') continue;
    if (r.kind === 'hash' && r.level === 0) {
      // One read of the entries gives both the bundle and the leaf hashes of the tile.
      const entries = await cs.entryRange(r.n * TILE_WIDTH, r.n * TILE_WIDTH + r.width);
      await put({ kind: 'entries', n: r.n, width: r.width }, encodeBundle(entries));
      await put(r, encodeHashTile(entries.map((e) => leafHash(e))));
      onProgress?.(r.n * TILE_WIDTH + r.width, size);
    } else {
      await put(r, await readTile(cs, r));
    }
  }
  for (const r of blockResources(n + 1)) await put(r, await readTile(cs, r));
  await writeFileAtomic(join(dir, 'checkpoint'), checkpoint, { mode: 0o644, overwrite: true });
  return { origin: cs.origin, size, blocks: n + 1, files: files + 1, bytes: bytes + Buffer.byteLength(checkpoint) };
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'Write the chains of a data folder as C2SP tlog-tiles static trees (checkpoint, tiles, entries, blocks).',
  details: [
    'Each chain goes to <out>/<origin>/ (e.g. ./tlog/oti/acme-hq/gw-lobby/) with the paths the local API serves under /tlog/<origin>/: checkpoint, tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>] and oti/blocks/<N>[.p/<W>] (docs/PROTOCOL.md §Tiles). Serve <out> with any static web server.',
    'Full tiles never change: exporting again into the same folder rewrites them with the same bytes and adds the new ones. The checkpoint is written last.',
    'While the gateway runs, a copy of the ledger is exported (up to the last complete block when the copy was taken).',
  ],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder' },
    out: { type: 'string', value: 'DIR', help: 'where to write the trees (created if missing)' },
    chain: { type: 'string', value: 'ORIGIN', help: 'only this chain, e.g. oti/acme-hq/gw-lobby' },
  },
  examples: ['oti export --data /var/lib/oti-gateway --out /srv/www/tlog', 'oti export --data ./data --out ./tlog --chain oti/acme-hq/gw-hall --json'],
  async run(p, term) {
    const data = str(p, 'data', true);
    const out = str(p, 'out', true);
    const only = str(p, 'chain');
    return withLedger(data, { copyIfLocked: true }, async ({ store }) => {
      const chains = (await store.listChains()).filter((c) => only === undefined || c.origin === only);
      if (only !== undefined && chains.length === 0) throw new OtiError('ERR_NOT_FOUND', `no chain ${only} in ${data}`);
      const reports: ExportReport[] = [];
      for (const c of chains) {
        const cs = await store.chain(c.origin, c.role);
        if (cs.head.n < 0) continue;
        const bar = term.progress(c.origin);
        reports.push(await exportChain(cs, join(out, c.origin), (done, size) => bar.update(done, size, 'entries')));
        bar.end();
      }
      return {
        json: { out, chains: reports },
        text: reports.length === 0 ? ['no chain with a block to export'] : reports.map((r) => `${join(out, r.origin)}: ${r.size} entries, ${r.blocks} blocks, ${r.files} files, ${r.bytes} bytes`),
      };
    });
  },
};
