/**
 * The broker's guard against failed-login floods. A password check costs one scrypt (N = 2^14,
 * 16 MiB, tens of milliseconds of CPU on the libuv threadpool, gateway/broker/users.ts). The
 * threadpool (4 threads unless UV_THREADPOOL_SIZE says otherwise) also runs LevelDB's reads and
 * writes and the file system calls of the ledger, so hundreds of wrong passwords at once would
 * queue the ledger's work behind them and delay lock acknowledgements. Hence:
 *
 * - every credentialed login first reserves a failure from its source address's token bucket and
 *   from the bucket of all addresses; a login that finds its address's bucket empty is refused
 *   at once (CONNACK 5, `address`), one that finds the overall bucket empty too (CONNACK 3,
 *   `total`), without any hashing. A login that succeeds gives its reservation back, so only
 *   failures count;
 * - at most `maxConcurrentChecks` credential checks run at once (the rest of the threadpool stays
 *   free for the ledger), and at most `maxPendingChecks` wait for one; beyond, `busy`.
 */
import { OtiError } from '../../ledger/base/errors.js';
import { TokenBucket, type LoginLimits } from './limits.js';

/** One login's reservation; say how it ended. */
export interface LoginTicket {
  /** The login succeeded: its reservation is given back. */
  succeeded(): void;
}

export class LoginGuard {
  readonly #limits: LoginLimits;
  readonly #now: () => number;
  readonly #total: TokenBucket;
  /** Source address → its bucket, least recently seen first. */
  readonly #addresses = new Map<string, TokenBucket>();
  readonly #waiting: (() => void)[] = [];
  #running = 0;

  constructor(limits: LoginLimits, now: () => number = () => performance.now()) {
    this.#limits = limits;
    this.#now = now;
    this.#total = new TokenBucket(limits.failuresPerMinute / 60, limits.failuresPerMinute, now);
  }

  /** Reserves one failure for a login from `address`, or says which limit refuses it. */
  admit(address: string): LoginTicket | 'address' | 'total' {
    const own = this.#bucket(address);
    if (!own.take()) return 'address';
    if (!this.#total.take()) {
      own.give();
      return 'total';
    }
    return {
      succeeded: () => {
        own.give();
        this.#total.give();
      },
    };
  }

  /**
   * Runs a credential check when a slot is free. Rejects with ERR_MQTT_BUSY at once when
   * `maxPendingChecks` are already waiting.
   */
  async check<T>(run: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#limits.maxConcurrentChecks) {
      if (this.#waiting.length >= this.#limits.maxPendingChecks) {
        throw new OtiError('ERR_MQTT_BUSY', `${this.#waiting.length} logins are already waiting for a credential check`, { limit: this.#limits.maxPendingChecks });
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await run();
    } finally {
      // The slot passes straight to the next waiter, or is freed.
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#running--;
    }
  }

  #bucket(address: string): TokenBucket {
    let b = this.#addresses.get(address);
    if (b !== undefined) {
      this.#addresses.delete(address);
    } else {
      b = new TokenBucket(this.#limits.failuresPerMinutePerAddress / 60, this.#limits.failuresPerMinutePerAddress, this.#now);
      if (this.#addresses.size >= this.#limits.trackedAddresses) {
        const oldest = this.#addresses.keys().next().value;
        if (oldest !== undefined) this.#addresses.delete(oldest);
      }
    }
    this.#addresses.set(address, b);
    return b;
  }
}
