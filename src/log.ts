/**
 * Structured logs with pino: object first, a short fixed lowercase message second. Tokens, keys
 * and message bodies are redacted wherever they appear in a logged object.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

import { logRedactPaths, REDACTED } from './redact.ts';

export type { Logger };

/** pino's redaction paths; what is secret is listed once, in src/redact.ts. */
export const redactPaths = logRedactPaths;

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
      redact: { paths: [...redactPaths], censor: REDACTED },
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that writes nothing, for instances embedded in tests or benchmarks. */
export const silentLogger: Logger = pino({ level: 'silent' });
