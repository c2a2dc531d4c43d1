/** Waiting for a condition in tests: no timed assertions, a generous bound, a clear message. */
import { setTimeout as sleep } from 'node:timers/promises';

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
