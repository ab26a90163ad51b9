/**
 * The wire codec: client frames (JSON text) in, validated with zod and turned into machine events;
 * server frames out. Validation errors become `frame.invalid` with a short reason that never
 * repeats the offending value (it may be a token).
 */
import { z } from 'zod';
import type { ConnectionEvent, Destination, FrameId } from '../machines/connection.machine.ts';
import type { ErrorCodeValue } from '../machines/codes.ts';
import { MAX_ID_LENGTH } from './subjects.ts';

const frameId = z.union([z.string().max(128), z.number().int().safe()]);
// Counted in UTF-16 code units, as `isValidId` and a token's `sub` are: zod's `max` counts code
// points, which let a 257-unit id (256 code points) through.
const id = z
  .string()
  .min(1)
  .refine((s) => s.length <= MAX_ID_LENGTH, `must be at most ${MAX_ID_LENGTH} UTF-16 code units`)
  .refine((s) => s.isWellFormed(), 'must be well-formed Unicode');
const token = z.string().min(1);

const clientFrame = z.discriminatedUnion('type', [
  z.object({ type: z.literal('auth'), token }),
  z.object({
    type: z.literal('send'),
    id: frameId,
    to: z.union([z.strictObject({ user: id }), z.strictObject({ room: id })]),
    body: z.unknown().refine((b) => b !== undefined, 'body is required'),
  }),
  z.object({ type: z.literal('join'), id: frameId, room: id }),
  z.object({ type: z.literal('leave'), id: frameId, room: id }),
  z.object({ type: z.literal('refresh'), id: frameId, token }),
  z.object({ type: z.literal('ping'), id: frameId.optional() }),
]);

export type ClientFrame = z.infer<typeof clientFrame>;

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

/** Parses one text frame into the event the connection machine understands. */
export function decodeClientFrame(text: string): ConnectionEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { type: 'frame.invalid', reason: 'frame is not JSON' };
  }
  const result = clientFrame.safeParse(value);
  if (!result.success) {
    return { type: 'frame.invalid', id: salvageId(value), reason: describe(result.error) };
  }
  const frame = result.data;
  switch (frame.type) {
    case 'auth':
      return { type: 'frame.auth', token: frame.token };
    case 'send':
      return { type: 'frame.send', id: frame.id, to: frame.to as Destination, body: frame.body };
    case 'join':
      return { type: 'frame.join', id: frame.id, room: frame.room };
    case 'leave':
      return { type: 'frame.leave', id: frame.id, room: frame.room };
    case 'refresh':
      return { type: 'frame.refresh', id: frame.id, token: frame.token };
    case 'ping':
      return { type: 'frame.ping', id: frame.id };
  }
}

/** Server → client frames. */
export type ServerFrame =
  | { type: 'welcome'; session: string; user: string; node: string; exp: number; degraded: boolean }
  | { type: 'ack'; id: FrameId; msgId?: string; exp?: number }
  | { type: 'error'; code: ErrorCodeValue; message: string; id?: FrameId; retryAfterMs?: number }
  | { type: 'expiring'; exp: number }
  | { type: 'pong'; id?: FrameId };

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
  message: { msgId: string; from: string; to: Destination; body: unknown; ts: number },
): string {
  return `${origin} ${message.ts}\n${JSON.stringify({ type: 'message', ...message })}`;
}

const NEWLINE = 0x0a;
const SPACE = 0x20;

/** Splits a chat message from NATS into its origin session, publish time and frame bytes. */
export function decodeChatMessage(
  data: Uint8Array,
): { origin: string; ts: number; frame: Buffer } | undefined {
  const cut = data.indexOf(NEWLINE);
  const space = data.indexOf(SPACE);
  if (cut < 0 || space < 0 || space > cut) return undefined;
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return {
    origin: bytes.toString('latin1', 0, space),
    ts: Number(bytes.toString('latin1', space + 1, cut)),
    frame: bytes.subarray(cut + 1),
  };
}
