/**
 * For callback-style calls made for thousands of items in flight (Chain.appendTo,
 * SignaturePool.checkCose): `done(ctx, result)` with a context instead of a promise per item. The
 * promise-returning form of such a call passes a promise's resolving functions as the context
 * and this as `done`.
 */
export function settlePromise<T>(ctx: unknown, result: T | Error): void {
  const p = ctx as { resolve: (value: T) => void; reject: (e: Error) => void };
  if (result instanceof Error) p.reject(result);
  else p.resolve(result);
}
