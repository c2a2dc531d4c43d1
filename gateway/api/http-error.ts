/**
 * The local API's error answers: an HttpError carries the HTTP status and the coded error that
 * becomes the JSON body (docs/API.md §Errors); toHttpError maps what a handler let through.
 */
import type { IncomingMessage } from 'node:http';
import { isOtiError, type ErrorCode } from '../../ledger/base/errors.js';

/** An error answer: the HTTP status and the coded error that becomes its body. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, code: ErrorCode, message: string, details?: Record<string, unknown>, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.headers = headers;
  }
}

/** HTTP status for an error a handler let through. */
function statusOf(code: ErrorCode): number {
  switch (code) {
    case 'ERR_ARGUMENT':
      return 400;
    case 'ERR_NOT_FOUND':
      return 404;
    case 'ERR_PROOF_RANGE':
      return 400;
    case 'ERR_STORE_CLOSED':
    case 'ERR_APPEND_ABORTED':
      return 503;
    default:
      return 500;
  }
}

/** The answer to an error a handler let through: its own code and status when coded, else 500 ERR_INTERNAL. */
export function toHttpError(e: unknown): HttpError {
  if (isOtiError(e)) return new HttpError(statusOf(e.code), e.code, e.message, e.code === 'ERR_ARGUMENT' && typeof e.details?.['param'] === 'string' ? { param: e.details['param'] } : undefined);
  return new HttpError(500, 'ERR_INTERNAL', 'internal error');
}

/**
 * True when `e` is the client hanging up before its request ended: Node.js destroys the request
 * with ECONNRESET "aborted" when the socket closes before the body announced by Content-Length or
 * chunked encoding has come. That is the client's doing, not an internal error.
 */
export function clientAborted(req: IncomingMessage, e: unknown): boolean {
  return !req.complete && (e as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET';
}
