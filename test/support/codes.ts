/** The stable code of the OtiError `f` throws, or undefined when it returns (anything else fails the test). */
import assert from 'node:assert/strict';
import { OtiError } from '../../ledger/base/errors.js';

export function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    assert.ok(e instanceof OtiError, `expected an OtiError, got ${String(e)}`);
    return e.code;
  }
}
