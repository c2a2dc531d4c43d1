/**
 * The start and stop order of the runtime as data: each part is started through `start()`, which
 * registers how to stop it once it has started, so the stop order is the start order reversed by
 * construction, and a start-up that fails half-way stops exactly what had started. A part that
 * must be stopped even when its start fails (a driver, which may have opened a port before it
 * failed) registers its stop first with `onStop()`.
 */
import type { Logger } from './log.js';

export interface Stage {
  readonly name: string;
  readonly stop: () => Promise<void> | void;
}

export class Stages {
  readonly #log: Logger;
  readonly #started: Stage[] = [];
  #stopping: Promise<void> | undefined;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Starts one part; once started, `stop` (if given) is how it is stopped. */
  async start<T>(name: string, start: () => Promise<T> | T, stop?: (part: T) => Promise<void> | void): Promise<T> {
    const part = await start();
    if (stop !== undefined) this.#started.push({ name, stop: () => stop(part) });
    return part;
  }

  /** Registers a stop with nothing to start here (or before a start that may fail half-way). */
  onStop(name: string, stop: () => Promise<void> | void): void {
    this.#started.push({ name, stop });
  }

  /** The names of the stages, in stop order (for tests and logs). */
  get stopOrder(): readonly string[] {
    return this.#started.map((s) => s.name).reverse();
  }

  /** Stops in reverse start order; each part is stopped even if an earlier one failed; the first failure is rethrown. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      let first: unknown;
      for (const s of this.#started.splice(0).reverse()) {
        try {
          await s.stop();
        } catch (e) {
          this.#log.error({ err: e, part: s.name }, `stopping ${s.name} failed`);
          first ??= e;
        }
      }
      if (first !== undefined) throw first;
    })();
    return this.#stopping;
  }
}
