/**
 * The process's last resort: an exception nobody caught or a rejection nobody handled is one
 * bounded log line (src/bounded-log.ts: at most 10 a minute, the rest counted; the error's type,
 * message and stack, never the error object, which may carry a token) and a count in
 * `chatgate_process_errors_total`, and the node keeps serving its other connections.
 *
 * It is the net, not the fix: every cause found so far is handled where it happens (HTTP request
 * targets, deep frames, NATS callbacks), and a line from here is a bug to fix. Installed once, by
 * the commands that serve (`gateway`, `auth`, `dev`).
 */
import { errorSummary, limitedLog } from './bounded-log.ts';
import type { Logger } from './log.ts';

export type ProcessErrorKind = 'uncaught_exception' | 'unhandled_rejection';

const counts: Record<ProcessErrorKind, number> = { uncaught_exception: 0, unhandled_rejection: 0 };
let installed = false;

/** How many of each the last resort has caught since the process started. */
export function processErrorCounts(): Readonly<Record<ProcessErrorKind, number>> {
  return counts;
}

/** Installs the handlers once per process; later calls do nothing. */
export function installLastResort(log: Logger): void {
  if (installed) return;
  installed = true;
  const report = limitedLog(log);
  const caught = (kind: ProcessErrorKind, err: unknown) => {
    counts[kind] += 1;
    report('error', { kind, error: errorSummary(err) }, 'uncaught error, serving on');
  };
  process.on('uncaughtException', (err) => caught('uncaught_exception', err));
  process.on('unhandledRejection', (reason) => caught('unhandled_rejection', reason));
}
