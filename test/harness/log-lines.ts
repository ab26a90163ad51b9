/** A real logger (createLogger, level info) whose lines a test reads, one string per line. */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.ts';

export function capturedLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(line);
      done();
    },
  });
  return { log: createLogger({ destination }), lines };
}
