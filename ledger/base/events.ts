/**
 * Typed subscriptions to typed emitters. The parts declare their events once, as a map from name
 * to argument tuple (`EventEmitter<{ block: [BlockEvent] }>`, @types/node's generic emitter);
 * whoever listens to several of them hands `listen` one object of listeners, checked against that
 * map (a misspelt name or a wrong argument type does not compile), and gets back the one function
 * that removes them all.
 */
import type { EventEmitter } from 'node:events';

/** Listeners for some of the events of the map `E`. */
export type Listeners<E> = { readonly [K in keyof E]?: E[K] extends unknown[] ? (...args: E[K]) => void : never };

/** Adds every listener of `listeners` to `emitter`; returns the function that removes them again. */
export function listen<E extends Record<keyof E, unknown[]>>(emitter: EventEmitter<E>, listeners: NoInfer<Listeners<E>>): () => void {
  // The names and argument types were checked against E at the call site; Node's emitter itself
  // dispatches on strings.
  const untyped = emitter as unknown as NodeJS.EventEmitter;
  const pairs = Object.entries(listeners) as [string, (...args: unknown[]) => void][];
  for (const [name, f] of pairs) untyped.on(name, f);
  return () => {
    for (const [name, f] of pairs) untyped.off(name, f);
  };
}
