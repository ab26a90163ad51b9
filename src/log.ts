/**
 * Structured logs with pino: object first, a short fixed lowercase message second. Tokens, keys
 * and message bodies are redacted wherever they appear in a logged object.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const redactPaths = [
  'token',
  '*.token',
  'body',
  '*.body',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'headers["sec-websocket-protocol"]',
  'privateJwk',
  '*.privateJwk',
  'apiToken',
  '*.apiToken',
];

export interface LogOptions {
  /** @default 'info' */
  level?: LevelWithSilent;
  /** Where lines go; stdout by default. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid },
      redact: { paths: redactPaths, censor: '[redacted]' },
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that writes nothing, for instances embedded in tests or benchmarks. */
export const silentLogger: Logger = pino({ level: 'silent' });
