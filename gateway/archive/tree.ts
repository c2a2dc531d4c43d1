/**
 * The Merkle tree of an archived chain (RFC 9162 over its entries), read from the tables: for
 * receipts (inclusion proofs) and for the C2SP tlog-tiles the archive serves (docs/ARCHIVE.md
 * §Tiles, ledger/tiles.ts says what a tile holds).
 *
 * Nodes of height 8, 16, 24 … (the heights of tile levels 1, 2, 3 …) are kept in `tree_nodes`
 * once worked out: a node of height 8 from its 256 entries, one of height 8·(k+1) from the 256
 * nodes of height 8·k under it. A node of a complete subtree of a verified, append-only chain
 * never changes, so it is written once (INSERT IGNORE) and read ever after: any node then costs
 * at most 256 entries or 256 stored nodes, and an inclusion proof O(log n) reads.
 */
import type { Pool } from 'mysql2/promise';
import { OtiError } from '../../ledger/base/errors.js';
import { leafHash, nodeHash, type NodeReader } from '../../ledger/merkle.js';
import { availableWidth, encodeBundle, encodeHashTile, nodesAtLevel, TILE_HEIGHT, TILE_WIDTH, type TileResource } from '../../ledger/tiles.js';

/** The root of a perfect tree over `nodes` (a power of two of them). */
function perfectRoot(nodes: readonly Uint8Array[]): Uint8Array {
  let level = [...nodes];
  while (level.length > 1) {
    const up: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) up.push(nodeHash(level[i]!, level[i + 1]!));
    level = up;
  }
  return level[0]!;
}

/** A node of height 8, 16, … : the root of leaves [idx · 2^height, (idx + 1) · 2^height). */
export interface TreeNode {
  readonly height: number;
  readonly idx: number;
  readonly hash: Uint8Array;
}

/**
 * The nodes of height 8, 16, … a growing tree completes, worked out as its leaves arrive (the
 * archive writes them with the block that completes them): per height, the hashes since the
 * last node of the height above, at most 255 each.
 */
export class TreeFrontier {
  #levels: Uint8Array[][] = [[]];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /**
   * The frontier of a tree of `size` leaves: per height 8k, the nodes since the last one of height
   * 8(k+1) (leaf hashes at height 0), read from the tables (at most 255 each).
   */
  static async of(tree: ArchivedTree, size: number): Promise<TreeFrontier> {
    const f = new TreeFrontier();
    f.#size = size;
    f.#levels = [];
    for (let k = 0; k === 0 || Math.floor(size / 2 ** (TILE_HEIGHT * k)) > 0; k++) {
      const height = TILE_HEIGHT * k;
      const done = Math.floor(size / 2 ** height);
      const first = Math.floor(size / 2 ** (height + TILE_HEIGHT)) * TILE_WIDTH;
      f.#levels.push(height === 0 ? await tree.leaves(first, done - first) : await tree.nodes(height, first, done - first));
    }
    return f;
  }

  clone(): TreeFrontier {
    const c = new TreeFrontier();
    c.#levels = this.#levels.map((l) => [...l]);
    c.#size = this.#size;
    return c;
  }

  /** Adds leaf hashes; returns the nodes they complete. */
  push(leaves: readonly Uint8Array[]): TreeNode[] {
    const out: TreeNode[] = [];
    for (const leaf of leaves) {
      this.#levels[0]!.push(leaf);
      this.#size++;
      for (let k = 0; this.#levels[k]!.length === TILE_WIDTH; k++) {
        const hash = perfectRoot(this.#levels[k]!);
        this.#levels[k] = [];
        const height = TILE_HEIGHT * (k + 1);
        out.push({ height, idx: Math.floor(this.#size / 2 ** height) - 1, hash });
        (this.#levels[k + 1] ??= []).push(hash);
      }
    }
    return out;
  }
}

export class ArchivedTree {
  readonly #pool: Pool;
  readonly origin: string;

  constructor(pool: Pool, origin: string) {
    this.#pool = pool;
    this.origin = origin;
  }

  /** The leaf hashes of entries [first, first + count), all archived or ERR_STORE_CORRUPT. */
  async leaves(first: number, count: number): Promise<Uint8Array[]> {
    return (await this.entries(first, count)).map((b) => leafHash(b));
  }

  async entries(first: number, count: number): Promise<Uint8Array[]> {
    if (count === 0) return [];
    const [rows] = await this.#pool.execute('SELECT bytes FROM entries WHERE origin = ? AND idx >= ? AND idx < ? ORDER BY idx', [this.origin, first, first + count]);
    const out = (rows as { bytes: Buffer }[]).map((r) => new Uint8Array(r.bytes));
    if (out.length !== count) throw new OtiError('ERR_STORE_CORRUPT', `entries [${first}, ${first + count}) of ${this.origin} are not all archived`, { origin: this.origin });
    return out;
  }

  /** Nodes of height `height` (a multiple of 8, at least 8), indices [first, first + count). */
  async nodes(height: number, first: number, count: number): Promise<Uint8Array[]> {
    if (count === 0) return [];
    const [rows] = await this.#pool.execute('SELECT idx, hash FROM tree_nodes WHERE origin = ? AND height = ? AND idx >= ? AND idx < ? ORDER BY idx', [this.origin, height, first, first + count]);
    const out: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(count);
    for (const r of rows as { idx: number | string; hash: Buffer }[]) out[Number(r.idx) - first] = new Uint8Array(r.hash);
    const made: [number, Uint8Array][] = [];
    for (let i = 0; i < count; i++) {
      if (out[i] !== undefined) continue;
      const below = first + i;
      const children = height === TILE_HEIGHT ? await this.leaves(below * TILE_WIDTH, TILE_WIDTH) : await this.nodes(height - TILE_HEIGHT, below * TILE_WIDTH, TILE_WIDTH);
      const root = perfectRoot(children);
      out[i] = root;
      made.push([below, root]);
    }
    if (made.length > 0) {
      await this.#pool.query('INSERT IGNORE INTO tree_nodes (origin, height, idx, hash) VALUES ?', [made.map(([idx, h]) => [this.origin, height, idx, Buffer.from(h)])]);
    }
    return out as Uint8Array[];
  }

  /** A node at any height: the root of leaves [index · 2^level, (index + 1) · 2^level). */
  async node(level: number, index: number): Promise<Uint8Array> {
    const stored = level - (level % TILE_HEIGHT);
    const span = 2 ** (level - stored);
    const below = stored === 0 ? await this.leaves(index * span, span) : await this.nodes(stored, index * span, span);
    return perfectRoot(below);
  }

  reader(): NodeReader {
    return { node: (level, index) => this.node(level, index) };
  }

  /**
   * The bytes of one tile of a chain of `size` entries and `blocks` blocks, as ledger/tile-source.ts
   * makes them from a gateway's store (so both serve the same bytes); ERR_NOT_FOUND beyond the chain.
   */
  async tile(r: TileResource, size: number, blocks: number): Promise<Uint8Array> {
    const count = r.kind === 'blocks' ? blocks : nodesAtLevel(size, r.kind === 'hash' ? r.level : 0);
    const have = availableWidth(count, r.n);
    if (r.width > have) throw new OtiError('ERR_NOT_FOUND', `${r.kind} tile ${r.n} of ${this.origin} has ${have} of the ${r.width} items asked for`, { origin: this.origin });
    const first = r.n * TILE_WIDTH;
    if (r.kind === 'entries') return encodeBundle(await this.entries(first, r.width));
    if (r.kind === 'blocks') {
      const [rows] = await this.#pool.execute('SELECT header, checkpoint FROM blocks WHERE origin = ? AND n >= ? AND n < ? ORDER BY n', [this.origin, first, first + r.width]);
      const list = rows as { header: Buffer; checkpoint: string }[];
      if (list.length !== r.width) throw new OtiError('ERR_STORE_CORRUPT', `blocks ${first}..${first + r.width - 1} of ${this.origin} are not all archived`, { origin: this.origin });
      return encodeBundle(list.flatMap((b) => [new Uint8Array(b.header), Buffer.from(b.checkpoint, 'utf8')]));
    }
    if (r.level === 0) return encodeHashTile(await this.leaves(first, r.width));
    return encodeHashTile(await this.nodes(r.level * TILE_HEIGHT, first, r.width));
  }
}
