/**
 * Waiting in tests, in one place: for an outcome, never for a fixed time. Every function takes
 * first what is awaited, in words (the failure reads "timed out waiting for <what>"), then the
 * condition, then a bound that only a failing test ever reaches.
 *
 * - waitUntil(what, check, ms?, detail?): polls `check` every 20 ms (state kept by someone else:
 *   a log array, a lock's counters, a file);
 * - waitForEvent(emitter, events, what, check, ms?, detail?): checks once at once and again on each of
 *   `events` (state behind an emitter: a SyncNode's progress);
 * - nextEvent(emitter, event, what, match, ms?): resolves with the first `event` whose argument
 *   matches (discovery's `peer` events).
 *
 * `check` may be async and may throw, which ends the wait with that error (e.g. "the process
 * exited"). `detail` adds what helps a reader to the timeout message (recent log lines).
 */
import type { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/** The default bound: generous for a loaded CI machine. */
export const WAIT_MS = 60_000;
const POLL_MS = 20;

function timedOut(what: string, detail?: () => string): Error {
  const more = detail?.();
  return new Error(`timed out waiting for ${what}${more === undefined || more === '' ? '' : `; ${more}`}`);
}

/** Resolves once `check` holds, polling every 20 ms; fails after `ms`. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, ms = WAIT_MS, detail?: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw timedOut(what, detail);
    await sleep(POLL_MS);
  }
}

/** Resolves once `check` holds, checking at once and again on each of `events` of `emitter`; fails after `ms`. */
export async function waitForEvent(emitter: EventEmitter, events: string | readonly string[], what: string, check: () => boolean | Promise<boolean>, ms = WAIT_MS, detail?: () => string): Promise<void> {
  if (await check()) return;
  const names = typeof events === 'string' ? [events] : events;
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const finish = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const e of names) emitter.off(e, on);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const timer = setTimeout(() => finish(timedOut(what, detail)), ms);
    const on = (): void => {
      Promise.resolve()
        .then(check)
        .then(
          (ok) => (ok ? finish() : undefined),
          (e: unknown) => finish(e),
        );
    };
    for (const e of names) emitter.on(e, on);
  });
}

/** Resolves with the argument of the first `event` of `emitter` that satisfies `match`; fails after `ms`. */
export function nextEvent<T>(emitter: EventEmitter, event: string, what: string, match: (v: T) => boolean, ms = WAIT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(timedOut(what));
    }, ms);
    const on = (v: T): void => {
      if (!match(v)) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(v);
    };
    emitter.on(event, on);
  });
}
