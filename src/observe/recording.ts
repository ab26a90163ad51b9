/**
 * Recording what the machines live through, so that it can be replayed (src/observe/replay.ts).
 *
 * With `GatewayOptions.recording` set, a node writes one JSON line per observation (src/observe/observe.ts)
 * of its connection actors (all of them, one user's, or one session's) and of its auth breaker,
 * to a file or to the node's NATS subject `chatgate.v1.recording.<node>` (base64url node id), so
 * that a recording can be captured from any node of a fleet. Each actor's first line is its
 * header: the machine, the chatgate version, the node, the session, the wall-clock start and the
 * part of the machine's input that replay needs. Lines of different actors interleave; a header
 * line for the same node, machine and session starts a new recording of that key.
 *
 * Lines go out one whole step at a time (an event, the effects it caused and the state it led
 * to), so a recording that stops early (a full sink, a node that stops) is still a valid prefix.
 * Tokens and message bodies are `[redacted]` unless `raw` is set.
 */
import { constants as fsConstants, readFileSync, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { NatsConnection } from '@nats-io/nats-core';
import { z } from 'zod';
import type { AnyActorRef } from 'xstate';
import type { ConnectionContext } from '../../machines/connection.machine.ts';
import type { BreakerContext } from '../../machines/circuit-breaker.machine.ts';
import type { ClientContext } from '../../machines/client.machine.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';
import { REDACTED, recordedForm, toPlain, type Observation, type ObservedMachine, type Observers } from './observe.ts';
import { subjects } from '../subjects.ts';

export interface RecordingOptions {
  /** A file (appended to), or the node's NATS subject `chatgate.v1.recording.<node>`. */
  to: 'file' | 'nats';
  /** The file, with `to: 'file'`. */
  path?: string;
  /** Record only this user's connections (and the breaker). @default every user */
  user?: string;
  /** Record only this session's connection (and the breaker). @default every session */
  session?: string;
  /** Keep tokens and message bodies. For local debugging only. @default false */
  raw?: boolean;
}

/** The version of the line format below; replay refuses others. */
export const RECORDING_FORMAT = 1;

/**
 * chatgate's version, from package.json, in every header. Found by the package's own name (its
 * `exports` list `./package.json`), which works from src/ and from the build in dist/ alike.
 */
export const CHATGATE_VERSION: string = (
  JSON.parse(readFileSync(createRequire(import.meta.url).resolve('chatgate/package.json'), 'utf8')) as { version: string }
).version;

// `client`: recordings an SDK client writes itself (src/client/recording.ts), same format.
const machineSchema = z.enum(['connection', 'breaker', 'client']);

export const headerSchema = z.object({
  kind: z.literal('header'),
  format: z.literal(RECORDING_FORMAT),
  machine: machineSchema,
  /** The chatgate version that recorded it. */
  version: z.string(),
  node: z.string(),
  session: z.string().optional(),
  /** Wall-clock start, ms since the epoch: each line's `t` counts from here. */
  startedAt: z.number(),
  /** The same, ISO 8601, for people. */
  started: z.string(),
  /** Tokens and bodies are `[redacted]`. */
  redacted: z.boolean(),
  /**
   * What replay must give the machine: `connection`: `{ session, token?, limits }` (`token` only
   * says that one came with the upgrade; it is always `[redacted]`); `breaker`: `{ options }`.
   */
  input: z.record(z.string(), z.unknown()),
  /** Delays the node provides to the machine (`connection`: `authTimeout`). */
  delays: z.record(z.string(), z.number()).optional(),
});

export type RecordingHeader = z.infer<typeof headerSchema>;

export const observationSchema = z.object({
  machine: machineSchema,
  node: z.string(),
  session: z.string().optional(),
  user: z.string().optional(),
  t: z.number(),
  kind: z.enum(['event', 'state', 'action']),
  event: z.looseObject({ type: z.string() }).optional(),
  state: z.unknown().optional(),
  action: z.object({ type: z.string(), params: z.unknown().optional() }).optional(),
});

/** One actor's recording: its header and what it lived, in order. */
export interface Recording {
  header: RecordingHeader;
  observations: Observation[];
}

export class RecordingFormatError extends Error {}

/** The key that lines of one actor share. */
const keyOf = (o: { node: string; machine: ObservedMachine; session?: string | undefined }) =>
  `${o.node}\u0000${o.machine}\u0000${o.session ?? ''}`;

/**
 * Splits JSON lines (a file, or what was captured from NATS) into one recording per actor, in
 * the order their headers came. Lines of an actor whose header was not captured are counted in
 * `orphans`. Throws `RecordingFormatError` with the line number on a line that is not ours.
 */
export function parseRecordings(text: string): { recordings: Recording[]; orphans: number } {
  const recordings: Recording[] = [];
  const current = new Map<string, Recording>();
  let orphans = 0;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new RecordingFormatError(`line ${n + 1} is not JSON`);
    }
    if ((value as { kind?: unknown })?.kind === 'header') {
      const header = headerSchema.safeParse(value);
      if (!header.success) throw new RecordingFormatError(`line ${n + 1}: not a recording header (format ${RECORDING_FORMAT})`);
      const recording: Recording = { header: header.data, observations: [] };
      recordings.push(recording);
      current.set(keyOf(header.data), recording);
      continue;
    }
    const observation = observationSchema.safeParse(value);
    if (!observation.success) throw new RecordingFormatError(`line ${n + 1}: not a recorded observation`);
    const recording = current.get(keyOf(observation.data));
    if (recording) recording.observations.push(observation.data as Observation);
    else orphans++;
  }
  return { recordings, orphans };
}

/** Where whole steps of lines go. `write` returns false when it cannot take them (full, broken). */
interface Sink {
  write(lines: string[]): boolean;
  close(): Promise<void>;
}

/** Bytes a recording file may have waiting for the disk before steps are refused. */
const MAX_PENDING_FILE_BYTES = 8 * 1024 * 1024;
/** Lines of one connection held back until its user is known (user filter). */
const MAX_HELD_LINES = 1000;

/**
 * Opens the recording file for appending, 0600: even redacted, a recording tells who talked to
 * whom and when. Never through a symlink (O_NOFOLLOW: one planted there would send the recording
 * elsewhere); an existing file must be ours, and is made 0600 if it was more open.
 */
async function openRecordingFile(path: string): Promise<WriteStream> {
  const refuse = (why: string) => new ChatgateError(ChatgateErrorCode.badOption, `cannot write the recording to ${path} (${why})`);
  const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = fsConstants;
  let handle;
  try {
    handle = await open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw refuse(code === 'ELOOP' ? 'it is a symbolic link' : (code ?? 'cannot open'));
  }
  try {
    const info = await handle.stat();
    // A FIFO (a reader that takes the recording as it comes) is fine; its mode is its creator's.
    if (!info.isFile() && !info.isFIFO()) throw refuse('not a regular file or FIFO');
    if (typeof process.getuid === 'function' && info.uid !== process.getuid()) throw refuse('owned by another user');
    if (info.isFile() && (info.mode & 0o077) !== 0) await handle.chmod(0o600);
  } catch (err) {
    await handle.close();
    throw err instanceof ChatgateError ? err : refuse((err as NodeJS.ErrnoException).code ?? 'cannot check it');
  }
  return handle.createWriteStream();
}

async function fileSink(path: string, log: Logger): Promise<Sink> {
  const stream = await openRecordingFile(path);
  let broken = false;
  stream.on('error', (err: NodeJS.ErrnoException) => {
    broken = true;
    log.error({ code: err.code, path }, 'recording file failed');
  });
  return {
    write(lines) {
      if (broken || stream.writableLength > MAX_PENDING_FILE_BYTES) return false;
      stream.write(`${lines.join('\n')}\n`);
      return true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (broken || stream.closed) return resolve();
        stream.end(() => resolve());
      }),
  };
}

function natsSink(nc: NatsConnection, node: string): Sink {
  const subject = subjects.recording(node);
  return {
    write(lines) {
      if (nc.isClosed() || nc.isDraining()) return false;
      try {
        // One message per step; a subscriber splits it on newlines.
        nc.publish(subject, lines.join('\n'));
        return true;
      } catch {
        // The client's outgoing buffer is full (NATS cut off): this actor's recording ends here.
        return false;
      }
    },
    // The node's NATS drain, after this, sends what is still buffered.
    close: async () => {},
  };
}

/**
 * The part of each machine's input that replay needs, read back from its context just after it
 * started (these parts never change afterwards).
 */
const inputOf: Record<ObservedMachine, (context: unknown) => Record<string, unknown>> = {
  // Never recorded by a node; the SDK writes its own header (src/client/recording.ts).
  client: (context) => {
    const c = context as ClientContext;
    return { urls: c.urls, options: c.options };
  },
  connection: (context) => {
    const c = context as ConnectionContext;
    // Replay stubs the token check: only whether a token came with the upgrade matters.
    return { session: c.session, ...(c.token === undefined ? {} : { token: REDACTED }), limits: c.limits };
  },
  breaker: (context) => ({ options: (context as BreakerContext).options }),
};

interface Track {
  key: string;
  machine: ObservedMachine;
  session: string | undefined;
  header: RecordingHeader | undefined;
  headerWritten: boolean;
  /** Lines of the step in progress: they go out with its state. */
  step: string[];
  /** Whole steps waiting for the header, or for the user to be known. */
  held: string[];
  /** The user filter is undecided until the session knows its user. */
  pendingUser: boolean;
  startedAt: number | undefined;
}

export interface Recorder {
  /**
   * Starts the recording of a root actor that has just started (a connection actor or the
   * breaker): its header comes from its context. `delays` are those the node provides to it.
   */
  describe(actor: AnyActorRef, delays?: Record<string, number>): void;
  /** Stops listening and closes the file. Idempotent. */
  close(): Promise<void>;
}

export interface RecorderContext {
  node: string;
  nc: NatsConnection;
  log: Logger;
}

/** Listens to `observers` and writes the recording; see the module comment. */
export async function startRecorder(
  observers: Observers,
  options: RecordingOptions,
  { node, nc, log }: RecorderContext,
): Promise<Recorder> {
  if (options.to === 'file' && !options.path) {
    throw new ChatgateError(ChatgateErrorCode.badOption, 'recording to a file needs its path');
  }
  const sink = options.to === 'file' ? await fileSink(options.path!, log) : natsSink(nc, node);
  const raw = options.raw ?? false;
  const tracks = new Map<string, Track>();
  /** Actors this recorder leaves out (another user or session). */
  const ignored = new Set<string>();

  const wanted = (machine: ObservedMachine, session: string | undefined) =>
    machine !== 'connection' || options.session === undefined || options.session === session;

  const trackOf = (key: string, machine: ObservedMachine, session: string | undefined): Track => {
    let track = tracks.get(key);
    if (!track) {
      track = {
        key,
        machine,
        session,
        header: undefined,
        headerWritten: false,
        step: [],
        held: [],
        pendingUser: machine === 'connection' && options.user !== undefined,
        startedAt: undefined,
      };
      tracks.set(key, track);
    }
    return track;
  };

  /** From now on, this actor is not recorded (its lines so far stay a valid recording). */
  const drop = (track: Track) => {
    tracks.delete(track.key);
    ignored.add(track.key);
  };
  /** Actors whose recording ended early since the sink last took a step: logged once per episode. */
  let refused = 0;

  /** Sends what the track can send now: its header and held steps, once it may. */
  const flush = (track: Track) => {
    if (!track.header || track.pendingUser || track.held.length === 0) return;
    const lines = track.headerWritten ? track.held : [JSON.stringify(track.header), ...track.held];
    if (!sink.write(lines)) {
      if (refused++ === 0) log.warn({ machine: track.machine, session: track.session }, 'recording sink full: recordings end early');
      return drop(track);
    }
    refused = 0;
    track.headerWritten = true;
    track.held = [];
  };

  const stopListening = observers.listen({
    filter: {},
    // Raw: each line is made by `recordedForm`, the form that replay compares with.
    raw: true,
    receive(o) {
      if (o.node !== node || !wanted(o.machine, o.session)) return;
      const key = keyOf(o);
      if (ignored.has(key)) return;
      const track = trackOf(key, o.machine, o.session);
      track.startedAt ??= Date.now() - o.t;
      track.step.push(JSON.stringify(recordedForm(o, raw)));
      if (o.kind !== 'state') return;
      // A state ends the step: the event, its effects and where it led go out together.
      track.held.push(...track.step.splice(0));
      if (track.pendingUser && o.user !== undefined) {
        if (o.user !== options.user) return drop(track);
        track.pendingUser = false;
      }
      if (track.held.length > MAX_HELD_LINES) {
        log.info({ session: track.session }, 'not recorded: too many lines before its user was known');
        return drop(track);
      }
      flush(track);
    },
  });

  const finish = (key: string) => {
    const track = tracks.get(key);
    if (track) flush(track);
    tracks.delete(key);
    ignored.delete(key);
  };

  let closed: Promise<void> | undefined;
  return {
    describe(actor, delays) {
      const snapshot = actor.getSnapshot() as { context: unknown; machine?: { id?: string } };
      const machine = machineSchema.safeParse(snapshot.machine?.id);
      if (!machine.success) return;
      const input = inputOf[machine.data](snapshot.context);
      const session = typeof input.session === 'string' ? input.session : undefined;
      if (!wanted(machine.data, session)) return;
      const key = keyOf({ node, machine: machine.data, session });
      // Once the actor is done or stopped, its last state has been observed (right after this).
      actor.subscribe({
        complete: () => queueMicrotask(() => finish(key)),
        error: () => queueMicrotask(() => finish(key)),
      });
      if (ignored.has(key)) return;
      const track = trackOf(key, machine.data, session);
      const startedAt = track.startedAt ?? Date.now();
      track.header = {
        kind: 'header',
        format: RECORDING_FORMAT,
        machine: machine.data,
        version: CHATGATE_VERSION,
        node,
        ...(session === undefined ? {} : { session }),
        startedAt,
        started: new Date(startedAt).toISOString(),
        redacted: !raw,
        input: toPlain(input),
        ...(delays ? { delays } : {}),
      };
      flush(track);
    },
    close: () =>
      (closed ??= (async () => {
        stopListening();
        for (const track of tracks.values()) flush(track);
        tracks.clear();
        await sink.close();
      })()),
  };
}

/**
 * Subscribes to the recording subject of one node, or of every node, and hands over each line
 * (for a capture tool or a test). Returns the function that stops it.
 */
export function captureRecordings(
  nc: NatsConnection,
  onLine: (line: string) => void,
  node?: string,
  log: Logger = silentLogger,
): () => void {
  // A subscription error ends the capture; the lines received so far stay valid.
  const guard = new CallbackGuard(log);
  const sub = nc.subscribe(node === undefined ? subjects.recordingAll : subjects.recording(node), {
    callback: guard.callback('recording capture', (msg) => {
      for (const line of msg.string().split('\n')) if (line) onLine(line);
    }),
  });
  return () => sub.unsubscribe();
}
