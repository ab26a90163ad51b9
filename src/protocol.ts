/**
 * The wire protocol's frames as TypeScript types: the one source that the server's codec
 * (src/gateway/codec.ts) and the client SDK (src/client/) both use. Types and constants only, no
 * imports of Node or of anything with effects, so that the browser build of the SDK can take it
 * as it is. docs/protocol.md says what each field means.
 *
 * Fields marked "durable" belong to durable delivery (DELIVERY=durable, docs/protocol.md): a node
 * without it ignores them in client frames and never sends them.
 */

/** The subprotocol every client offers (`Sec-WebSocket-Protocol`). */
export const SUBPROTOCOL = 'chatgate.v1';
/** Prefix of the subprotocol that carries a token from a browser: `bearer.<jwt>`. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.';

// Type-only imports: erased from the build, so the browser bundle takes nothing from the machines
// but these names. FrameId is a string of at most 128 characters or a safe integer; a Destination
// is one user's sessions or a room's members.
import type { Destination, FrameId } from '../machines/connection.machine.ts';
import type { ErrorCodeValue } from '../machines/codes.ts';

export type { Destination, ErrorCodeValue, FrameId };
/** An opaque position (≤ 64 characters) in one destination's order (durable). */
export type Position = string;

// ---- client → server ----

export interface AuthFrame {
  type: 'auth';
  token: string;
  /** Resume the user's inbox after this position (durable). */
  since?: Position;
}
export interface SendFrame {
  type: 'send';
  id: FrameId;
  to: Destination;
  body: unknown;
  /** Idempotency key (1–64 characters): a re-send with the same key is acknowledged, not delivered again (durable). */
  key?: string;
}
export interface JoinFrame {
  type: 'join';
  id: FrameId;
  room: string;
  /** Replay the room's messages after this position before the ack (durable). */
  since?: Position;
}
export interface LeaveFrame {
  type: 'leave';
  id: FrameId;
  room: string;
}
export interface RefreshFrame {
  type: 'refresh';
  id: FrameId;
  token: string;
}
export interface PingFrame {
  type: 'ping';
  id?: FrameId;
}
/** A page of a destination's stored messages, oldest first (durable): exactly one of `room` or `user: true`. */
export interface HistoryFrame {
  type: 'history';
  id: FrameId;
  room?: string;
  user?: true;
  before?: Position;
  /** 1–100. @default 50 */
  limit?: number;
}

/** A signal (presence, issue 14): not stored, never acked unless `id` is given. */
export interface SignalFrame {
  type: 'signal';
  id?: FrameId;
  to: Destination;
  body: unknown;
}
/** Ask who is in a room (presence, issue 14). */
export interface PresenceRequestFrame {
  type: 'presence';
  id: FrameId;
  room: string;
}

export type ClientFrame = SignalFrame | PresenceRequestFrame | AuthFrame | SendFrame | JoinFrame | LeaveFrame | RefreshFrame | PingFrame | HistoryFrame;

// ---- server → client ----

export interface WelcomeFrame {
  type: 'welcome';
  session: string;
  user: string;
  node: string;
  exp: number;
  degraded: boolean;
  /** Whether the inbox was resumed from `since` (durable; only when `since` was given). */
  recovered?: boolean;
  /** The inbox's newest position when the session started: live messages come after it (durable; absent while the inbox is empty). */
  pos?: Position;
}
export interface MessageFrame {
  type: 'message';
  msgId: string;
  from: string;
  to: Destination;
  body: unknown;
  ts: number;
  /** Its position in its destination's order (durable). */
  pos?: Position;
}
export interface AckFrame {
  type: 'ack';
  id: FrameId;
  /** `send`: the message's id. */
  msgId?: string;
  /** `send`: the message's position; `join`: the room's newest position, live messages come after it (durable). */
  pos?: Position;
  /** `refresh`: the new token's expiry. */
  exp?: number;
  /** `join` with `since`: whether the room was resumed (durable). */
  recovered?: boolean;
}
export interface ErrorFrame {
  type: 'error';
  code: ErrorCodeValue;
  message: string;
  id?: FrameId;
  retryAfterMs?: number;
}
export interface ExpiringFrame {
  type: 'expiring';
  exp: number;
}
export interface PongFrame {
  type: 'pong';
  id?: FrameId;
}
/** The answer to `history` (durable). */
export interface HistoryAnswerFrame {
  type: 'history';
  id: FrameId;
  messages: MessageFrame[];
  more: boolean;
}

/** The answer to a `presence` request: who is in a room now (presence, issue 14). */
export interface PresenceFrame {
  type: 'presence';
  id: FrameId;
  room: string;
  count: number;
  users: string[];
}
/** A user joined or left a room this session is in (presence, issue 14). */
export interface MembershipFrame {
  type: 'joined' | 'left';
  room: string;
  user: string;
}

/** A signal as received (presence, issue 14). */
export interface SignalReceivedFrame {
  type: 'signal';
  from: string;
  to: Destination;
  body: unknown;
}

export type ServerFrame =
  | SignalReceivedFrame
  | PresenceFrame
  | MembershipFrame
  | WelcomeFrame
  | MessageFrame
  | AckFrame
  | ErrorFrame
  | ExpiringFrame
  | PongFrame
  | HistoryAnswerFrame;
