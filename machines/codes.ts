/**
 * The contract's close codes and error codes, as one table each. They live beside the machines
 * because the machines decide them and may not import from `src/`; everything else (gateway,
 * docs test, metrics) reads them from here.
 */

/** WebSocket close codes that chatgate sends, with the reason text it sends with each. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  policyViolation: 1008,
  messageTooBig: 1009,
  /** Never sent: recorded when the connection is lost without a close frame (missed heartbeat). */
  abnormalClosure: 1006,
  internalError: 1011,
  tryAgainLater: 1013,
  invalidToken: 4001,
  tokenExpired: 4002,
  authTimeout: 4008,
  slowConsumer: 4009,
} as const;

export type CloseCodeName = keyof typeof CloseCode;
export type CloseCodeValue = (typeof CloseCode)[CloseCodeName];

/** What each close code means; the docs test checks every one appears in docs/protocol.md. */
export const closeCodeMeaning: Record<CloseCodeValue, string> = {
  1000: 'normal closure',
  1001: 'node going away',
  1003: 'binary frame',
  1008: 'policy violation (repeated abuse)',
  1006: 'connection lost (never sent; recorded when a heartbeat is missed)',
  1009: 'frame too large',
  1011: 'internal error',
  1013: 'try again later',
  4001: 'invalid token',
  4002: 'token expired',
  4008: 'auth timeout',
  4009: 'slow consumer',
};

/** Error codes carried by `error` frames. */
export const ErrorCode = {
  badRequest: 'bad_request',
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  rateLimited: 'rate_limited',
  unavailable: 'unavailable',
  internal: 'internal',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export const errorCodeMeaning: Record<ErrorCodeValue, string> = {
  bad_request: 'the frame is malformed or names something invalid',
  unauthorized: 'not authenticated yet, or the token offered is not valid',
  forbidden: 'the token does not allow it',
  rate_limited: 'too many frames; retry after the hint',
  unavailable: 'a dependency (NATS, auth service) cannot be reached now',
  internal: 'a bug on the node; the request was not carried out',
};
