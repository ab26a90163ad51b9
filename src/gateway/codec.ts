/**
 * The wire codec: client frames (JSON text) in, validated with zod and turned into machine events;
 * server frames out. Validation errors become `frame.invalid` with a short reason that never
 * repeats the offending value (it may be a token).
 *
 * A `body` nests at most `MAX_BODY_DEPTH` levels of arrays and objects: everything that copies a
 * body later (the observers' redaction, JSON encoding for NATS, recordings) is then safe from
 * running out of stack. JSON.parse itself does not recurse, and the depth check here does not
 * either, so a 64 KiB frame of brackets is refused like any other bad frame.
 */
import { isUtf8 } from 'node:buffer';
import { z } from 'zod';
import type { ConnectionEvent, Destination, FrameId } from '../../machines/connection.machine.ts';
import type { ClientFrame, HistoryAnswerFrame, ServerFrame as ProtocolServerFrame } from '../protocol.ts';
import { MAX_ID_LENGTH } from '../subjects.ts';
import { MAX_POSITION_LENGTH, decodePosition } from '../durable/positions.ts';

const frameId = z.union([z.string().max(128), z.number().int().safe()]);
// Counted in UTF-16 code units, as `isValidId` and a token's `sub` are: zod's `max` counts code
// points, which let a 257-unit id (256 code points) through.
const id = z
  .string()
  .min(1)
  .refine((s) => s.length <= MAX_ID_LENGTH, `must be at most ${MAX_ID_LENGTH} UTF-16 code units`)
  .refine((s) => s.isWellFormed(), 'must be well-formed Unicode');
const token = z.string().min(1);
/**
 * A `since` (resume position) is opaque and never refuses a frame: anything but a string of at
 * most 64 characters becomes `''`, which is no position (`recovered: false`).
 */
const since = z
  .unknown()
  .optional()
  .transform((v) => (v === undefined ? undefined : typeof v === 'string' && v.length <= MAX_POSITION_LENGTH ? v : ''));
/** A `before` position of `history`: a well-formed position, or the frame is a bad request. */
const before = z
  .string()
  .refine((v) => decodePosition(v) !== undefined, 'not a position');
/** The most messages one `history` frame returns, and how many when it does not say. */
export const HISTORY_MAX_LIMIT = 100;
export const HISTORY_DEFAULT_LIMIT = 50;

/** The deepest a `send` frame's `body` may nest arrays and objects: `"x"` is 0 levels, `[[1]]` 2. */
export const MAX_BODY_DEPTH = 32;

/** Whether `value` nests arrays and objects deeper than `max` levels. Iterative: any depth is safe. */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const pending: Array<{ value: object; depth: number }> = [];
  if (typeof value === 'object' && value !== null) pending.push({ value, depth: 1 });
  for (let next = pending.pop(); next; next = pending.pop()) {
    if (next.depth > max) return true;
    for (const child of Array.isArray(next.value) ? next.value : Object.values(next.value)) {
      if (typeof child === 'object' && child !== null) pending.push({ value: child as object, depth: next.depth + 1 });
    }
  }
  return false;
}

/** The largest `body` of a `signal`, in bytes of its JSON encoding. */
export const MAX_SIGNAL_BODY_BYTES = 1024;

/** A destination: exactly one of `user` or `room`. */
export const destination = z.union([z.strictObject({ user: id }), z.strictObject({ room: id })]);
/** Any JSON value (`null` too) nested at most `MAX_BODY_DEPTH` levels. */
export const body = z
  .unknown()
  .refine((b) => b !== undefined, 'body is required')
  .refine((b) => !nestsDeeperThan(b, MAX_BODY_DEPTH), `nests deeper than ${MAX_BODY_DEPTH} levels`);

const clientFrame = z.discriminatedUnion('type', [
  z.object({ type: z.literal('auth'), token, since }),
  z.object({
    type: z.literal('send'),
    id: frameId,
    to: destination,
    body,
    /** Idempotency key (durable delivery): 1–64 characters. */
    key: z.string().min(1).max(64).optional(),
  }),
  z.object({
    type: z.literal('signal'),
    id: frameId.optional(),
    to: destination,
    // The depth check first: only then is encoding it safe.
    body: body.refine(
      (b) => Buffer.byteLength(JSON.stringify(b) ?? '') <= MAX_SIGNAL_BODY_BYTES,
      `larger than ${MAX_SIGNAL_BODY_BYTES} bytes`,
    ),
  }),
  z.object({ type: z.literal('presence'), id: frameId, room: id }),
  z.object({ type: z.literal('join'), id: frameId, room: id, since }),
  z
    .object({
      type: z.literal('history'),
      id: frameId,
      room: id.optional(),
      user: z.literal(true).optional(),
      before: before.optional(),
      limit: z.number().int().min(1).max(HISTORY_MAX_LIMIT).optional(),
    })
    .refine((f) => (f.room === undefined) !== (f.user === undefined), 'give either room or user: true'),
  z.object({ type: z.literal('leave'), id: frameId, room: id }),
  z.object({ type: z.literal('refresh'), id: frameId, token }),
  z.object({ type: z.literal('ping'), id: frameId.optional() }),
]);

/** What the schema accepts; each is one of src/protocol.ts's client frames (checked below). */
export type DecodedClientFrame = z.infer<typeof clientFrame>;
// The schema and the shared types may not drift: a decoded frame must be a protocol frame.
export type DecodedIsProtocol = DecodedClientFrame extends ClientFrame ? true : never;
export const decodedIsProtocol: DecodedIsProtocol = true;

/** The `id` of a frame that failed validation, when it has a usable one. */
function salvageId(value: unknown): FrameId | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const candidate = (value as { id?: unknown }).id;
  return frameId.safeParse(candidate).success ? (candidate as FrameId) : undefined;
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid frame';
  const path = issue.path.join('.');
  if (issue.code === 'invalid_union' && path === '') return 'unknown frame type';
  return path ? `${path}: ${issue.message}` : issue.message;
}

/** A user or room id as `id` above accepts it: 1–256 UTF-16 code units of well-formed Unicode. */
const isId = (v: unknown): v is string =>
  typeof v === 'string' && v.length >= 1 && v.length <= MAX_ID_LENGTH && v.isWellFormed();

/** A destination as `destination` above accepts it: an object with exactly one key, `user` or `room`. */
function isPlainDestination(to: unknown): to is Destination {
  if (typeof to !== 'object' || to === null || Array.isArray(to)) return false;
  let keys = 0;
  for (const key in to) {
    if (++keys > 1 || (key !== 'user' && key !== 'room') || !isId((to as Record<string, unknown>)[key])) return false;
  }
  return keys === 1;
}

/**
 * The common case without zod: a well-formed `send` frame becomes its event here, exactly as the
 * schema would make it (`test/unit/codec.property.test.ts` checks that for any frame this accepts).
 * Anything it is not sure of (another type, a field out of bounds, an unknown extra key) is
 * undefined and goes to the schema, which is then the one that accepts or refuses it and words
 * the reason. Only the obviously valid is accepted here: a `key` or `id` counted in UTF-16 units
 * is within zod's bound in code points too.
 */
export function decodeSendFast(value: unknown): ConnectionEvent | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const f = value as Record<string, unknown>;
  if (f.type !== 'send') return undefined;
  // No other key: the schema would drop one, and only it says what it does with what.
  for (const key in f) {
    if (key !== 'type' && key !== 'id' && key !== 'to' && key !== 'body' && key !== 'key') return undefined;
  }
  const id = f.id;
  if (typeof id === 'string' ? id.length > 128 : !Number.isSafeInteger(id)) return undefined;
  const to = f.to;
  if (!isPlainDestination(to)) return undefined;
  const body = f.body;
  if (body === undefined || (typeof body === 'object' && body !== null && nestsDeeperThan(body, MAX_BODY_DEPTH))) return undefined;
  const key = f.key;
  if (key === undefined) {
    return { type: 'frame.send', id: id as FrameId, to: 'user' in to ? { user: to.user } : { room: to.room }, body };
  }
  if (typeof key !== 'string' || key.length < 1 || key.length > 64) return undefined;
  return { type: 'frame.send', id: id as FrameId, to: 'user' in to ? { user: to.user } : { room: to.room }, body, key };
}

/** Parses one text frame into the event the connection machine understands. */
export function decodeClientFrame(text: string): ConnectionEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { type: 'frame.invalid', reason: 'frame is not JSON' };
  }
  return decodeSendFast(value) ?? decodeFrameValue(value);
}

/** A parsed frame into its event, by the schema alone (what `decodeSendFast` must agree with). */
export function decodeFrameValue(value: unknown): ConnectionEvent {
  const result = clientFrame.safeParse(value);
  if (!result.success) {
    return { type: 'frame.invalid', id: salvageId(value), reason: describe(result.error) };
  }
  const frame = result.data;
  switch (frame.type) {
    case 'auth':
      return frame.since === undefined
        ? { type: 'frame.auth', token: frame.token }
        : { type: 'frame.auth', token: frame.token, since: frame.since };
    case 'send':
      return frame.key === undefined
        ? { type: 'frame.send', id: frame.id, to: frame.to as Destination, body: frame.body }
        : { type: 'frame.send', id: frame.id, to: frame.to as Destination, body: frame.body, key: frame.key };
    case 'join':
      return frame.since === undefined
        ? { type: 'frame.join', id: frame.id, room: frame.room }
        : { type: 'frame.join', id: frame.id, room: frame.room, since: frame.since };
    case 'history': {
      const event: ConnectionEvent = { type: 'frame.history', id: frame.id, limit: frame.limit ?? HISTORY_DEFAULT_LIMIT };
      if (frame.room !== undefined) event.room = frame.room;
      if (frame.before !== undefined) event.before = frame.before;
      return event;
    }
    case 'leave':
      return { type: 'frame.leave', id: frame.id, room: frame.room };
    case 'refresh':
      return { type: 'frame.refresh', id: frame.id, token: frame.token };
    case 'ping':
      return { type: 'frame.ping', id: frame.id };
    case 'signal':
      return { type: 'frame.signal', id: frame.id, to: frame.to as Destination, body: frame.body };
    case 'presence':
      return { type: 'frame.presence', id: frame.id, room: frame.room };
  }
}

/** Server → client frames that this node writes: src/protocol.ts's (`history` comes with durable delivery). */
export type ServerFrame = Exclude<ProtocolServerFrame, HistoryAnswerFrame>;

export function encodeServerFrame(frame: ServerFrame): string {
  return JSON.stringify(frame);
}

/**
 * A chat message as it travels on NATS: one header line (the sending session's id, or empty for
 * a message to a user, a space, the publish time in ms) then the `message` frame exactly as
 * clients receive it. It is encoded once by the sender's node; every receiving node writes the
 * frame bytes to its sockets as they are.
 */
export function encodeChatMessage(
  origin: string,
  message: { msgId: string; from: string; to: Destination; body: unknown; ts: number; system?: true },
): string {
  // A literal, not a spread: the same keys in the same order, without copying the object twice.
  const { msgId, from, to, body, ts } = message;
  const frame = message.system
    ? { type: 'message', msgId, from, to, body, ts, system: true }
    : { type: 'message', msgId, from, to, body, ts };
  return `${origin} ${ts}\n${JSON.stringify(frame)}`;
}

/**
 * A signal as it travels on NATS: the same header as a chat message, then the `signal` frame as
 * clients receive it. No `msgId`, no `ts` in the frame, no `pos`: it is never stored.
 */
export function encodeSignal(origin: string, signal: { from: string; to: Destination; body: unknown }, ts: number): string {
  return `${origin} ${ts}\n${JSON.stringify({ type: 'signal', from: signal.from, to: signal.to, body: signal.body })}`;
}

const NEWLINE = 0x0a;
const SPACE = 0x20;
/** A session id (a nuid: 22 base62 characters), with room to spare; empty for user messages. */
const ORIGIN = /^[A-Za-z0-9]{0,64}$/;
/** Milliseconds since the epoch, as `encodeChatMessage` writes them: digits only. */
const TIMESTAMP = /^[0-9]{1,15}$/;

/** The fields every `message` frame has (see `encodeChatMessage`). */
function isMessageFrame(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const m = value as Record<string, unknown>;
  return (
    m.type === 'message' &&
    typeof m.msgId === 'string' &&
    typeof m.from === 'string' &&
    typeof m.to === 'object' &&
    m.to !== null &&
    typeof m.ts === 'number' &&
    'body' in m
  );
}

const isDestination = (to: unknown): boolean => {
  if (typeof to !== 'object' || to === null || Array.isArray(to)) return false;
  const keys = Object.keys(to);
  const value = (to as Record<string, unknown>)[keys[0] ?? ''];
  return keys.length === 1 && (keys[0] === 'user' || keys[0] === 'room') && typeof value === 'string';
};

/** A `signal` frame: exactly `type`, `from`, `to` (one of `user`, `room`) and `body`, nothing else. */
function isSignalFrame(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const m = value as Record<string, unknown>;
  return (
    m.type === 'signal' &&
    Object.keys(m).length === 4 &&
    typeof m.from === 'string' &&
    isDestination(m.to) &&
    'body' in m
  );
}

/**
 * Splits a chat message or a signal from NATS into its origin session, publish time and frame
 * bytes; anything else on a user or room subject is undefined, and is dropped. Strict, because receivers write the
 * frame's bytes to their sockets as they are: the header's exact form, and a frame that is UTF-8
 * and a JSON `message` frame, so that a client never gets a text frame it cannot read. (One parse
 * per message and node, not per recipient.)
 */
export function decodeChatMessage(
  data: Uint8Array,
): { origin: string; ts: number; frame: Buffer; type: 'message' | 'signal' } | undefined {
  const cut = data.indexOf(NEWLINE);
  const space = data.indexOf(SPACE);
  if (cut < 0 || space < 0 || space > cut) return undefined;
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const origin = bytes.toString('latin1', 0, space);
  const ts = bytes.toString('latin1', space + 1, cut);
  const frame = bytes.subarray(cut + 1);
  if (!ORIGIN.test(origin) || !TIMESTAMP.test(ts) || !isUtf8(frame)) return undefined;
  let type: 'message' | 'signal';
  try {
    const value: unknown = JSON.parse(frame.toString('utf8'));
    if (isMessageFrame(value)) type = 'message';
    else if (isSignalFrame(value)) type = 'signal';
    else return undefined;
  } catch {
    // Not JSON: dropped like any other malformed message.
    return undefined;
  }
  return { origin, ts: Number(ts), frame, type };
}
