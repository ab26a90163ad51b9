/**
 * Log lines that stay bounded when the input behind them is hostile: in number (a budget of
 * lines per minute per place, so that a storm of bad messages or errors cannot flood the log;
 * the lines held back are counted in the next one written) and in size (of an error, only its
 * type, its message cut short and the first frames of its stack: never the error object itself,
 * whose own fields may carry a token or a message body).
 */
import type { Logger } from './log.ts';

/** How many lines one place may write per window, and how long a window is. */
export interface LogBudgetOptions {
  /** @default 10 */
  lines?: number;
  /** @default 60000 */
  windowMs?: number;
  now?: () => number;
}

export class LogBudget {
  readonly #lines: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #used = 0;
  #heldBack = 0;

  constructor(options: LogBudgetOptions = {}) {
    this.#lines = options.lines ?? 10;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** Undefined when no line may be written now; else how many were held back since the last one. */
  take(): number | undefined {
    const now = this.#now();
    if (now - this.#windowStart >= this.#windowMs) {
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used >= this.#lines) {
      this.#heldBack += 1;
      return undefined;
    }
    this.#used += 1;
    const heldBack = this.#heldBack;
    this.#heldBack = 0;
    return heldBack;
  }
}

export type LimitedLog = (level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, message: string) => void;

/** A log function for one place, within its own budget; `heldBack` says how many lines it skipped. */
export function limitedLog(log: Logger, options?: LogBudgetOptions): LimitedLog {
  const budget = new LogBudget(options);
  return (level, fields, message) => {
    const heldBack = budget.take();
    if (heldBack === undefined) return;
    log[level](heldBack > 0 ? { ...fields, heldBack } : fields, message);
  };
}

const MAX_MESSAGE_CHARS = 200;
const MAX_STACK_FRAMES = 8;

/**
 * What a log line may say of a thrown value: its type, its message (cut) and where it was thrown.
 * A thrown value that is not an Error says only its type: it may be anything, a token included.
 * Logged under `error`, not `err`, so that pino's serializer does not copy every field again.
 */
export function errorSummary(err: unknown): { type: string; message?: string; stack?: string } {
  if (!(err instanceof Error)) return { type: err === null ? 'null' : typeof err };
  try {
    const frames = (err.stack ?? '')
      .split('\n')
      .filter((line) => line.trimStart().startsWith('at '))
      .slice(0, MAX_STACK_FRAMES)
      .map((line) => line.trim().slice(0, 200));
    return { type: err.name.slice(0, 64), message: String(err.message).slice(0, MAX_MESSAGE_CHARS), stack: frames.join('\n') };
  } catch {
    // A getter on the error threw: its type is all there is to say.
    return { type: 'Error' };
  }
}
