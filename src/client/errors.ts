/**
 * The SDK's errors: one class, stable machine-readable codes. Errors from the node (`error`
 * frames) keep the node's code (docs/protocol.md); the others are the SDK's own.
 */
import type { ErrorCodeValue } from '../protocol.ts';

export const ClientErrorCode = {
  /** A `send` was not acknowledged within its deadline (`sendTimeoutMs`); it may or may not have been delivered. */
  sendTimeout: 'send_timeout',
  /** The outbox already holds `maxOutbox` unacknowledged sends. */
  outboxFull: 'outbox_full',
  /** A `join`, `leave`, `history`, `presence` or `signal` was not answered within `requestTimeoutMs`. */
  requestTimeout: 'request_timeout',
  /** The client was closed (by `close()`, or for good after a close code that retrying cannot fix). */
  closed: 'closed',
} as const;

export type ClientErrorCodeValue = (typeof ClientErrorCode)[keyof typeof ClientErrorCode] | ErrorCodeValue;

export class ClientError extends Error {
  readonly code: ClientErrorCodeValue;
  /** From a `rate_limited` answer. */
  readonly retryAfterMs: number | undefined;

  constructor(code: ClientErrorCodeValue, message: string, retryAfterMs?: number) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}
