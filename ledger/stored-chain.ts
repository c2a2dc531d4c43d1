/**
 * The read side that a gateway's own `Chain` and a peer's `ChainReplica` share: every
 * ChainReader read goes to the ChainStore under the chain, so what is served is always what is
 * durable (docs in ledger/reader.ts). Writing stays with the subclass, which decides what is
 * valid before it is stored.
 *
 * An EventEmitter because `Chain` announces its blocks; a replica has no events of its own.
 */
import { EventEmitter } from 'node:events';
import type { ChainStore } from './chain-store.js';
import type { ChainHead, ChainReader, ChainRole, EntrySpans, StoredBlock } from './reader.js';

export abstract class StoredChain<E extends Record<keyof E, unknown[]> = Record<never, never>> extends EventEmitter<E> implements ChainReader {
  readonly #store: ChainStore;

  protected constructor(store: ChainStore) {
    super();
    this.#store = store;
  }

  get origin(): string {
    return this.#store.origin;
  }

  get role(): ChainRole {
    return this.#store.role;
  }

  /** The last durable block. */
  get head(): ChainHead {
    return this.#store.head;
  }

  get size(): number {
    return this.#store.head.size;
  }

  entry(index: number): Promise<Uint8Array> {
    return this.#store.entry(index);
  }

  entries(from: number, to: number): AsyncGenerator<{ index: number; bytes: Uint8Array }> {
    return this.#store.entries(from, to);
  }

  entryRange(from: number, to: number): Promise<Uint8Array[]> {
    return this.#store.entryRange(from, to);
  }

  entrySpans(from: number, to: number): Promise<EntrySpans> {
    return this.#store.entrySpans(from, to);
  }

  block(n: number): Promise<StoredBlock> {
    return this.#store.block(n);
  }

  blocks(n: number, to?: number): AsyncGenerator<StoredBlock> {
    return this.#store.blocks(n, to);
  }

  blockOf(index: number): Promise<StoredBlock> {
    return this.#store.blockOf(index);
  }

  node(level: number, index: number): Promise<Uint8Array> {
    return this.#store.node(level, index);
  }

  nodeRange(level: number, first: number, count: number): Promise<Uint8Array[]> {
    return this.#store.nodeRange(level, first, count);
  }
}
