/**
 * What is secret, once: the field names whose values never leave the process as they are (logs,
 * the inspector page, recordings). Tokens and message bodies everywhere; the log also hides
 * Authorization headers, the `bearer.` subprotocol and private keys, which only it can meet.
 */
export const REDACTED = '[redacted]';

/** Fields replaced at any depth in observations (src/observe/observe.ts `redact`). */
export const SECRET_FIELDS = ['token', 'body'] as const;

/** Fields the log hides, at the top level and one level down. */
const LOG_SECRET_FIELDS = [...SECRET_FIELDS, 'authorization', 'privateJwk', 'apiToken'] as const;

/** pino's redaction paths (src/log.ts). */
export const logRedactPaths: readonly string[] = [
  ...LOG_SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]),
  'headers.authorization',
  'req.headers.authorization',
  'headers["sec-websocket-protocol"]',
];
