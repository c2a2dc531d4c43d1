/**
 * The broker's guard against failed-login floods. A password check costs one scrypt (N = 2^14,
 * 16 MiB, tens of milliseconds of CPU on the libuv threadpool, gateway/broker/users.ts). The
 * threadpool (4 threads unless UV_THREADPOOL_SIZE says otherwise) also runs LevelDB's reads and
 * writes and the file system calls of the ledger, so hundreds of wrong passwords at once would
 * queue the ledger's work behind them and delay lock acknowledgements. Hence two separate limits:
 *
 * - a failure budget: a token bucket per source address and one for all addresses. Only a check
 *   that fails spends from them; a login that succeeds spends nothing, however many arrive at once.
 *   A login whose address has spent its budget is refused at once (`address`), one that finds the
 *   overall budget spent too (`total`), without any hashing; so is one that waited in line while
 *   the checks before it spent the budget. A check starts only while its address's budget and the
 *   overall one could still pay for it and for every check already running, so even a flood of
 *   wrong passwords never gets more checks done than the budgets allow;
 * - concurrency: at most `maxConcurrentChecks` credential checks run at once (the rest of the
 *   threadpool stays free for the ledger), and at most `maxPendingChecks` wait for one; beyond,
 *   ERR_MQTT_BUSY.
 */
import { OtiError } from '../../ledger/base/errors.js';
import { TokenBucket, type LoginLimits } from './limits.js';

/** A login waiting in line for a check. */
interface Waiter {
  readonly address: string;
  start(): void;
  refuse(e: OtiError): void;
}

export class LoginGuard {
  readonly #limits: LoginLimits;
  readonly #now: () => number;
  readonly #total: TokenBucket;
  /** Source address → its bucket, least recently seen first. */
  readonly #addresses = new Map<string, TokenBucket>();
  /** Source address → its checks running now (at most `maxConcurrentChecks` entries). */
  readonly #runningFrom = new Map<string, number>();
  readonly #waiting: Waiter[] = [];
  #running = 0;

  constructor(limits: LoginLimits, now: () => number = () => performance.now()) {
    this.#limits = limits;
    this.#now = now;
    this.#total = new TokenBucket(limits.failuresPerMinute / 60, limits.failuresPerMinute, now);
  }

  /**
   * Runs `run`, the credential check of a login from `address`, when a slot is free and the
   * failure budgets allow. `run` resolves to undefined when the credentials are wrong: that
   * failure is charged to the address's budget and the overall one. A check that throws is not
   * charged. Rejects with ERR_MQTT_LOGIN_RATE (`details.budget`: `address` or `total`) when a
   * budget is spent, before or after waiting in line, and with ERR_MQTT_BUSY when
   * `maxPendingChecks` logins already wait.
   */
  async check<T>(address: string, run: () => Promise<T | undefined>): Promise<T | undefined> {
    const spent = this.#spent(address);
    if (spent !== undefined) throw spent;
    await new Promise<void>((start, refuse) => {
      this.#waiting.push({ address, start, refuse });
      this.#pump();
      const i = this.#waiting.findIndex((w) => w.start === start);
      if (i >= 0 && this.#waiting.length > this.#limits.maxPendingChecks) {
        this.#waiting.splice(i, 1);
        refuse(new OtiError('ERR_MQTT_BUSY', `${this.#waiting.length} logins are already waiting for a credential check`, { limit: this.#limits.maxPendingChecks }));
      }
    });
    let failed = false;
    try {
      const result = await run();
      failed = result === undefined;
      return result;
    } finally {
      if (failed) {
        this.#bucket(address).take();
        this.#total.take();
      }
      this.#running--;
      const n = (this.#runningFrom.get(address) ?? 1) - 1;
      if (n === 0) this.#runningFrom.delete(address);
      else this.#runningFrom.set(address, n);
      this.#pump();
    }
  }

  /** Starts waiting logins in order while slots are free; refuses those whose budget is now spent. */
  #pump(): void {
    for (let i = 0; i < this.#waiting.length && this.#running < this.#limits.maxConcurrentChecks; ) {
      const w = this.#waiting[i] as Waiter;
      const spent = this.#spent(w.address);
      if (spent !== undefined) {
        this.#waiting.splice(i, 1);
        w.refuse(spent);
        continue;
      }
      // Budget left, but the checks running could spend it: this one waits for them (only
      // possible with more than one check at a time), and the next in line may go first.
      const running = this.#runningFrom.get(w.address) ?? 0;
      if (this.#bucket(w.address).tokens() < running + 1 || this.#total.tokens() < this.#running + 1) {
        i++;
        continue;
      }
      this.#waiting.splice(i, 1);
      this.#running++;
      this.#runningFrom.set(w.address, running + 1);
      w.start();
    }
  }

  /** The refusal for a login from `address` when its budget or the overall one is spent. */
  #spent(address: string): OtiError | undefined {
    if (this.#bucket(address).tokens() < 1) {
      return new OtiError('ERR_MQTT_LOGIN_RATE', `too many failed logins from ${address} in the last minute`, { budget: 'address', limit: this.#limits.failuresPerMinutePerAddress });
    }
    if (this.#total.tokens() < 1) {
      return new OtiError('ERR_MQTT_LOGIN_RATE', 'too many failed logins in the last minute', { budget: 'total', limit: this.#limits.failuresPerMinute });
    }
    return undefined;
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
