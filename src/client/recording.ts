/**
 * Recording a client's machine, in the format of the server's recordings (src/observe/recording.ts):
 * one header line, then one JSON line per event the machine receives, state it enters and effect
 * it asks for, so that `chatgate replay FILE` replays a client like a connection. Browser-safe: it
 * hands each line to the application's `record` function, which stores it where it likes. Tokens
 * and message bodies are `[redacted]`.
 */
import type { AnyEventObject, InspectionEvent, StateValue } from 'xstate';

/** The line format (the server's `RECORDING_FORMAT`). */
export const CLIENT_RECORDING_FORMAT = 1;
const SECRET_KEYS = new Set(['token', 'body']);
const MAX_DEPTH = 64;

/** A JSON-safe copy with every `token` and `body` replaced; functions and class instances become labels. */
export function redactForRecord(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return typeof value === 'function' ? '[function]' : value;
  if (depth > MAX_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((v) => redactForRecord(v, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return '[object]';
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue;
    out[key] = SECRET_KEYS.has(key) ? '[redacted]' : redactForRecord(item, depth + 1);
  }
  return out;
}

export interface ClientRecordingMeta {
  /** This client's id (the recording's `session`). */
  id: string;
  /** What replay gives the machine as input besides `now` and `random`. */
  input: Record<string, unknown>;
}

/** The `inspect` option of the client's actor that writes its recording to `record`. */
export function clientRecorder(meta: ClientRecordingMeta, record: (line: string) => void) {
  const startedAt = Date.now();
  const started = performance.now();
  let headerWritten = false;
  const base = { machine: 'client', node: 'client', session: meta.id };
  const write = (line: object) => {
    // A failing sink loses lines, never the client.
    try {
      record(JSON.stringify(line));
    } catch {
      // The application's sink failed: recording is best effort by design.
    }
  };
  return (ev: InspectionEvent) => {
    if (ev.actorRef.sessionId !== ev.rootId) return;
    if (!headerWritten) {
      headerWritten = true;
      write({
        kind: 'header',
        format: CLIENT_RECORDING_FORMAT,
        machine: 'client',
        version: 'client',
        node: 'client',
        session: meta.id,
        startedAt,
        started: new Date(startedAt).toISOString(),
        redacted: true,
        input: redactForRecord(meta.input),
      });
    }
    const t = Math.round((performance.now() - started) * 1000) / 1000;
    if (ev.type === '@xstate.event') {
      if ((ev.event as AnyEventObject).type === 'xstate.init') return;
      write({ ...base, t, kind: 'event', event: redactForRecord(ev.event) });
    } else if (ev.type === '@xstate.snapshot') {
      write({ ...base, t, kind: 'state', state: (ev.snapshot as { value?: StateValue }).value });
    } else if (ev.type === '@xstate.action') {
      write({ ...base, t, kind: 'action', action: redactForRecord(ev.action) });
    }
  };
}
