/**
 * The lifecycle of one WebSocket connection.
 *
 *   open.awaitingAuth → open.authenticating → open.active (token ∥ refresh) → closing → closed
 *
 * Pure: no I/O, no clock. Every effect (writing a frame, subscribing on NATS, closing the socket)
 * is a named action with an empty body here, and `src/gateway/session.ts` provides the real one with
 * `machine.provide(...)`. Time enters only through the named delays and the `now` function given
 * in the input, so tests drive the machine with a simulated clock.
 */
import { and, assign, enqueueActions, fromPromise, raise, setup } from 'xstate';
import { CloseCode, ErrorCode, type ErrorCodeValue } from './codes.ts';

/** A client's correlation id, echoed in `ack` and `error`. */
export type FrameId = string | number;
export type Destination = { user: string } | { room: string };
/** What a token lets a session do in a room: `r` join, receive, history, presence; `rw` also send. */
export type Capability = 'r' | 'rw';
/** Capabilities per room; the key `'*'` applies to every room without its own entry. */
export type RoomCapabilities = { readonly [room: string]: Capability };
/** `'*'` allows every room (rw); a list grants `rw` in each room; an object gives each room its capability. */
export type RoomGrant = '*' | readonly string[] | RoomCapabilities;

const isRoomList = (rooms: RoomGrant): rooms is readonly string[] => Array.isArray(rooms);

/** The capability `rooms` gives in `room`, or undefined when it grants nothing there. */
export function capabilityOf(rooms: RoomGrant, room: string): Capability | undefined {
  if (rooms === '*') return 'rw';
  if (isRoomList(rooms)) return rooms.includes(room) ? 'rw' : undefined;
  const caps = rooms as RoomCapabilities;
  if (Object.hasOwn(caps, room)) return caps[room];
  return Object.hasOwn(caps, '*') ? caps['*'] : undefined;
}

export interface VerifiedClaims {
  sub: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  rooms: RoomGrant;
  jti?: string;
  /** Issued at, seconds since the epoch: a revocation of the user covers tokens issued until then. */
  iat?: number;
}

/**
 * What the `subscribeUser` actor rejects with when the user already has as many sessions on
 * this node as it may (`MAX_SESSIONS_PER_USER`); any other rejection means NATS failed.
 */
export const tooManySessions = { refused: 'tooManySessions' } as const;
const isTooManySessions = (error: unknown) =>
  typeof error === 'object' && error !== null && (error as { refused?: unknown }).refused === tooManySessions.refused;

/** What the `verifyToken` actor resolves to; it rejects only on a bug. */
export type VerifyResult =
  | { outcome: 'ok'; claims: VerifiedClaims; degraded: boolean }
  | { outcome: 'invalid' | 'expired' | 'unavailable'; reason: string };

/** Frames that only an authenticated session may send. */
export type SessionFrameEvent =
  /**
   * `bytes`: the frame's size as received, counted against the send byte bucket (0 when absent).
   * `userRetryAfterMs`: the verdict of the sender's per-user budget on this node, given by the
   * effect that received the frame: over 0 when the user's sessions here have sent too much.
   */
  | { type: 'frame.send'; id: FrameId; to: Destination; body: unknown; bytes?: number; key?: string; userRetryAfterMs?: number }
  /** `since`: a position to resume the room from (durable delivery); opaque here. */
  | { type: 'frame.join'; id: FrameId; room: string; since?: string }
  /** A page of stored messages of a room, or of the user's inbox when `room` is absent. */
  | { type: 'frame.history'; id: FrameId; room?: string; before?: string; limit: number }
  | { type: 'frame.leave'; id: FrameId; room: string }
  | { type: 'frame.refresh'; id: FrameId; token: string }
  /** Never stored: delivered like a message to whoever is there now. `id` only when the client gave one. */
  | { type: 'frame.signal'; id?: FrameId; to: Destination; body: unknown }
  | { type: 'frame.presence'; id: FrameId; room: string };

export type ConnectionEvent =
  | SessionFrameEvent
  /** `since`: a position to resume the user's inbox from (durable delivery); opaque here. */
  | { type: 'frame.auth'; token: string; since?: string }
  | { type: 'frame.ping'; id?: FrameId }
  | { type: 'frame.invalid'; id?: FrameId; reason: string }
  | { type: 'frame.binary' }
  | { type: 'frame.tooLarge' }
  | { type: 'socket.closed'; code: number }
  | { type: 'socket.slow' }
  /** A room join could not be made whole (NATS, or the stream's barrier read, failed): undo it. */
  | { type: 'join.failed'; room: string; id: FrameId }
  | { type: 'heartbeat.lost' }
  | { type: 'node.shutdown' }
  | { type: 'session.revoked'; reason: string }
  /** A degraded session passed the auth service's re-check. */
  | { type: 'session.confirmed' }
  | { type: 'token.renewed' };

export interface ConnectionLimits {
  /** Frames held while the token is being checked; one more closes with 1008. @default 32 */
  maxHeldFrames: number;
  /**
   * Refused frames a session may send (malformed, unauthorized, forbidden, rate-limited); one
   * more closes with 1008. @default 10
   */
  maxStrikes: number;
  /** How long before `exp` the `expiring` frame is sent. @default 30000 */
  expiryWarningMs: number;
  /** Sends a session may make per second, on average (token bucket refill). @default 50 */
  sendsPerSecond: number;
  /** Sends a session may make at once (token bucket size). @default 100 */
  sendBurst: number;
  /** Bytes of `send` frames a session may send per second, on average (byte bucket refill). @default 65536 */
  sendBytesPerSecond: number;
  /** Bytes of `send` frames a session may send at once (byte bucket size). @default 262144 */
  sendBytesBurst: number;
  /** Clock skew allowed past `exp`: the session closes with 4002 this long after `exp`. @default 5000 */
  clockToleranceMs: number;
  /** Rooms one session may have joined at once; one more join is forbidden. @default 100 */
  maxRooms: number;
  /** Signals a session may send per second, on average (its own token bucket). @default 10 */
  signalsPerSecond: number;
  /** Signals a session may send at once. @default 20 */
  signalBurst: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  maxHeldFrames: 32,
  maxStrikes: 10,
  expiryWarningMs: 30_000,
  sendsPerSecond: 50,
  sendBurst: 100,
  sendBytesPerSecond: 65_536,
  sendBytesBurst: 262_144,
  clockToleranceMs: 5000,
  maxRooms: 100,
  signalsPerSecond: 10,
  signalBurst: 20,
};

/** The merged limits of each frozen limits object given in an input (see `limitsOf`). */
const mergedLimits = new WeakMap<Partial<ConnectionLimits>, ConnectionLimits>();

/**
 * The limits of a new actor: the defaults, overridden by the input's. A frozen input object (a
 * gateway node's, given to every session) is merged once and the result shared by every actor
 * given it, so an idle session does not hold its own copy; the limits are only ever read.
 */
function limitsOf(given: Partial<ConnectionLimits> | undefined): ConnectionLimits {
  if (given === undefined || !Object.isFrozen(given)) return { ...defaultConnectionLimits, ...given };
  let merged = mergedLimits.get(given);
  if (merged === undefined) {
    merged = Object.freeze({ ...defaultConnectionLimits, ...given });
    mergedLimits.set(given, merged);
  }
  return merged;
}

export interface ConnectionInput {
  session: string;
  /** A token that came with the upgrade request (header or subprotocol). */
  token?: string;
  /** A position to resume the user's inbox from (`?since=` on the upgrade URL). */
  since?: string;
  /** Milliseconds since the epoch; `Date.now` in production, a simulated clock in tests. */
  now: () => number;
  limits?: Partial<ConnectionLimits>;
}

export interface ConnectionContext {
  session: string;
  now: () => number;
  limits: ConnectionLimits;
  /** Only until it has been checked; never kept once the session is active. */
  token: string | undefined;
  user: string | undefined;
  exp: number | undefined;
  rooms: RoomGrant;
  joined: string[];
  degraded: boolean;
  jti: string | undefined;
  iat: number | undefined;
  held: SessionFrameEvent[];
  /** Where the user's inbox resumes from: the upgrade URL's or the auth frame's `since`. */
  since: string | undefined;
  /** The id of the `refresh` frame being checked. */
  refreshId: FrameId | undefined;
  strikes: number;
  /**
   * The token buckets: send frames, send bytes and signals left at `at`, all refilled to the same
   * moment whenever one is taken. One field for all of them: XState copies the context on every
   * `assign` (`Object.assign({}, context, update)`), and V8 copies an object of up to 19
   * properties fast and one of 20 about ten times slower (measured: 0.6 → 6 µs; a send went from
   * 6 to 11 µs when signals added two fields). Keep the context at 19 fields or fewer.
   */
  buckets: Buckets;
  closeCode: number | undefined;
  closeReason: string | undefined;
}

/** setTimeout fires at once past 2^31-1 ms (~24.8 days): longer waits are re-armed in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const clampDelay = (ms: number) => Math.min(Math.max(0, ms), MAX_TIMER_MS);
const expiresAtMs = (context: ConnectionContext) => (context.exp ?? 0) * 1000;
/** When the session ends: `exp`, plus the clock skew the token checks allow. */
const closesAtMs = (context: ConnectionContext) => expiresAtMs(context) + context.limits.clockToleranceMs;

const isAllowed = (rooms: RoomGrant, room: string) => capabilityOf(rooms, room) !== undefined;

export interface Buckets {
  sendTokens: number;
  sendBytes: number;
  signals: number;
  /** When they were last refilled (ms, the input's `now`). */
  at: number;
}

/** Send tokens available at `now`: the bucket refilled since it was last checked. */
const sendTokensAt = (buckets: Buckets, limits: ConnectionLimits, now: number) =>
  Math.min(limits.sendBurst, buckets.sendTokens + ((now - buckets.at) / 1000) * limits.sendsPerSecond);

/** Send bytes available at `now`: the byte bucket refilled since it was last checked. */
const sendBytesAt = (buckets: Buckets, limits: ConnectionLimits, now: number) =>
  Math.min(limits.sendBytesBurst, buckets.sendBytes + ((now - buckets.at) / 1000) * limits.sendBytesPerSecond);

/** Signal tokens available at `now`. */
const signalTokensAt = (buckets: Buckets, limits: ConnectionLimits, now: number) =>
  Math.min(limits.signalBurst, buckets.signals + ((now - buckets.at) / 1000) * limits.signalsPerSecond);

const sendTokensNow = (context: ConnectionContext) => sendTokensAt(context.buckets, context.limits, context.now());
const sendBytesNow = (context: ConnectionContext) => sendBytesAt(context.buckets, context.limits, context.now());
const signalTokensNow = (context: ConnectionContext) => signalTokensAt(context.buckets, context.limits, context.now());

/** What a frame takes from the byte bucket: a `send` its size, other frames nothing. */
const frameBytes = (event: ConnectionEvent) => (event.type === 'frame.send' ? (event.bytes ?? 0) : 0);

/** The per-user budget's wait for this frame (0: the user's sessions may send it). */
const userWaitMs = (event: ConnectionEvent) => (event.type === 'frame.send' ? (event.userRetryAfterMs ?? 0) : 0);

/** What `sendVerdict` reads of a session: its buckets and limits, and the rooms it joined and may write. */
export type SendState = Pick<ConnectionContext, 'buckets' | 'limits' | 'joined' | 'rooms'>;

/**
 * What a frame that takes from the send bucket asks of `sendVerdict`: a `send` frame's
 * destination, size and per-user wait; other frames (join, leave, ping, ...) give none of them.
 */
export interface SendAsk {
  to?: Destination;
  bytes?: number;
  userRetryAfterMs?: number;
}
const NO_SEND: SendAsk = {};
const sendAskOf = (event: ConnectionEvent): SendAsk => (event.type === 'frame.send' ? event : NO_SEND);

/**
 * What `open.active` does with a frame that takes from the send bucket, at `now`:
 * - `overRate`: no send token, no room for its bytes, or its user's budget on the node is spent
 *   (refused with `rate_limited` and a strike);
 * - `unwritable`: a `send` to a room this session has not joined or may only read (forbidden, a strike);
 * - `accept`: one send token and its bytes are taken (`takeSend`), and a `send` is published.
 *
 * The one decision, for two callers: the machine's guards `isOverSendRate` and
 * `isToUnwritableRoom` ask it, and so does the gateway's fast path for accepted sends
 * (src/gateway/session.ts, docs/scaling.md), which may take a send only when this says
 * `accept` in a state where `acceptsSendsFast` holds. A property test checks they agree.
 */
export function sendVerdict(state: SendState, now: number, ask: SendAsk): 'accept' | 'overRate' | 'unwritable' {
  if (
    sendTokensAt(state.buckets, state.limits, now) < 1 ||
    sendBytesAt(state.buckets, state.limits, now) < (ask.bytes ?? 0) ||
    (ask.userRetryAfterMs ?? 0) > 0
  ) {
    return 'overRate';
  }
  const to = ask.to;
  if (to !== undefined && 'room' in to && (!state.joined.includes(to.room) || capabilityOf(state.rooms, to.room) !== 'rw')) {
    return 'unwritable';
  }
  return 'accept';
}

/** The buckets after one send token and `bytes` are taken at `now` (what `takeSendToken` assigns). */
export function takeSend(buckets: Buckets, limits: ConnectionLimits, now: number, bytes: number): Buckets {
  return {
    sendTokens: sendTokensAt(buckets, limits, now) - 1,
    sendBytes: sendBytesAt(buckets, limits, now) - bytes,
    signals: signalTokensAt(buckets, limits, now),
    at: now,
  };
}

/**
 * Whether a snapshot is in a state where every `send` frame is decided by `sendVerdict` alone,
 * with no other transition: `open.active` (either token state, either refresh state). The fast
 * path for accepted sends is open only there.
 */
export function acceptsSendsFast(snapshot: { status: string; value: unknown }): boolean {
  if (snapshot.status !== 'active') return false;
  const open = (snapshot.value as { open?: unknown }).open;
  return typeof open === 'object' && open !== null && 'active' in open;
}

/** How long until there is one send token and room for this frame's bytes again. */
const retryAfterMs = (context: ConnectionContext, event: ConnectionEvent) =>
  Math.max(
    0,
    userWaitMs(event),
    Math.ceil(((1 - sendTokensNow(context)) / context.limits.sendsPerSecond) * 1000),
    Math.ceil(((frameBytes(event) - sendBytesNow(context)) / context.limits.sendBytesPerSecond) * 1000),
  );

type CloseParams = { code: number; reason: string };
type ErrorParams = { id?: FrameId; code: ErrorCodeValue; message: string; retryAfterMs?: number };

/** The same transition for every frame that needs a session. */
const forSessionFrames = <T>(transition: T) => ({
  'frame.send': transition,
  'frame.join': transition,
  'frame.leave': transition,
  'frame.refresh': transition,
  'frame.signal': transition,
  'frame.presence': transition,
  'frame.history': transition,
});

/** Frames that came while the token was being checked are handled once the session is active. */
const replayHeldFrames = enqueueActions<
  ConnectionContext,
  ConnectionEvent,
  undefined,
  ConnectionEvent,
  never,
  never,
  never,
  never,
  never
>(({ context, enqueue }) => {
  for (const frame of context.held) enqueue.raise(frame);
  enqueue.assign({ held: [] });
});

/** Rooms joined now that `rooms` no longer grants. */
const ungrantedRooms = (joined: readonly string[], rooms: RoomGrant) =>
  joined.filter((room) => !isAllowed(rooms, room));

/**
 * The guard of a refusal: a guard name of the machine, or `and([...])` of them. Typed loosely
 * because it is built outside `setup()`, so TypeScript cannot check the names here: a misspelt
 * one throws the first time its transition is tried, and the machine tests try every one.
 */
type FrameGuard = 'isOverSendRate' | 'isOverSignalRate' | 'isRoomLimitReached' | object;

/**
 * A refused frame: one strike and its `error`, and the frame that is one strike more than
 * `maxStrikes` closes with 1008 instead. Every refusal that is the client's doing goes through
 * here (forbidden, rate-limited, unauthorized, a refresh already in flight), so a client cannot
 * make the node answer, and log, without end. Without `guard` it is the last, catch-all branch.
 */
const refuseFrame = <E extends ConnectionEvent>(
  params: (args: { context: ConnectionContext; event: E }) => ErrorParams,
  guard?: FrameGuard,
) =>
  [
    {
      guard: guard === undefined ? ('isAbusive' as const) : (and([guard as never, 'isAbusive']) as never),
      target: '#connection.closing',
      actions: {
        type: 'closeWith',
        params: { code: CloseCode.policyViolation, reason: 'too many refused frames' },
      },
    },
    { guard: guard as never, actions: ['addStrike', { type: 'sendError', params }] },
  ] as const;

/** A send, join, leave or refresh over the session's rate (frames or bytes), with a retry hint. */
const refuseOverRate = refuseFrame<SessionFrameEvent>(
  ({ context, event }) => ({
    id: event.id,
    code: ErrorCode.rateLimited,
    message: event.type === 'frame.send' ? 'too many sends' : 'too many frames',
    retryAfterMs: retryAfterMs(context, event),
  }),
  'isOverSendRate',
);

/** A ping over the session's frame rate. */
const refusePingOverRate = refuseFrame<Extract<ConnectionEvent, { type: 'frame.ping' }>>(
  ({ context, event }) => ({
    id: event.id,
    code: ErrorCode.rateLimited,
    message: 'too many frames',
    retryAfterMs: retryAfterMs(context, event),
  }),
  'isOverSendRate',
);

/** A join or leave of a room the token does not grant. */
const refuseUngrantedRoom = refuseFrame<SessionFrameEvent>(({ event }) => ({
  id: event.id,
  code: ErrorCode.forbidden,
  message: 'the token does not grant this room',
}));

/** An effect that `src/` provides; it does nothing here. */
const effect = () => {};

export const connectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
  },
  actors: {
    verifyToken: fromPromise<VerifyResult, { token: string; session: string }>(async () => {
      throw new Error('verifyToken is provided by src/gateway/session.ts');
    }),
    /** Resolves once the node receives the user's messages. */
    subscribeUser: fromPromise<void, { session: string; user: string; since?: string }>(async () => {
      throw new Error('subscribeUser is provided by src/gateway/session.ts');
    }),
  },
  delays: {
    authTimeout: 5000,
    closeGrace: 5000,
    untilExpiring: ({ context }) =>
      clampDelay(expiresAtMs(context) - context.limits.expiryWarningMs - context.now()),
    untilExpiry: ({ context }) => clampDelay(closesAtMs(context) - context.now()),
  },
  guards: {
    hasToken: ({ context }) => context.token !== undefined,
    isVerified: (_, result: VerifyResult) => result.outcome === 'ok',
    isOutcome: (_, p: { result: VerifyResult; outcome: VerifyResult['outcome'] }) =>
      p.result.outcome === p.outcome,
    isSameUser: ({ context }, result: VerifyResult) =>
      result.outcome === 'ok' && result.claims.sub === context.user,
    isHoldFull: ({ context }) => context.held.length >= context.limits.maxHeldFrames,
    isAbusive: ({ context }) => context.strikes + 1 > context.limits.maxStrikes,
    isOverSendRate: ({ context, event }) => sendVerdict(context, context.now(), sendAskOf(event)) === 'overRate',
    isTooManySessions: (_, error: unknown) => isTooManySessions(error),
    isRoomLimitReached: ({ context }) => context.joined.length >= context.limits.maxRooms,
    isRoomJoined: ({ context }, room: string) => context.joined.includes(room),
    isToUnjoinedRoom: ({ context }, to: Destination) =>
      'room' in to && !context.joined.includes(to.room),
    isRoomAllowed: ({ context }, room: string) => isAllowed(context.rooms, room),
    isRoomDenied: ({ context }, room: string) => !isAllowed(context.rooms, room),
    /** A room the token lets this session read but not write to. */
    isToReadOnlyRoom: ({ context }, to: Destination) =>
      'room' in to && capabilityOf(context.rooms, to.room) !== 'rw',
    isOverSignalRate: ({ context }) => signalTokensNow(context) < 1,
    /** A room this session has not joined, or may only read. */
    isToUnwritableRoom: ({ context, event }, to: Destination) =>
      sendVerdict(context, context.now(), { to, bytes: frameBytes(event), userRetryAfterMs: userWaitMs(event) }) === 'unwritable',
    /** The user's own inbox, or a room the token grants (joining is not needed). */
    isHistoryAllowed: ({ context }, room: string | undefined) => room === undefined || isAllowed(context.rooms, room),
    isExpiringSoon: ({ context }) =>
      expiresAtMs(context) - context.limits.expiryWarningMs <= context.now(),
    isTokenExpired: ({ context }) => closesAtMs(context) <= context.now(),
  },
  actions: {
    closeWith: assign((_, p: CloseParams) => ({ closeCode: p.code, closeReason: p.reason })),
    recordPeerClose: assign((_, p: { code: number }) => ({
      closeCode: p.code,
      closeReason: 'closed by peer',
    })),
    storeToken: assign((_, token: string) => ({ token })),
    storeSince: assign(({ context }, since: string | undefined) => ({ since: since ?? context.since })),
    acceptSession: assign((_, result: VerifyResult) =>
      result.outcome === 'ok'
        ? {
            token: undefined,
            user: result.claims.sub,
            exp: result.claims.exp,
            rooms: result.claims.rooms,
            jti: result.claims.jti,
            iat: result.claims.iat,
            degraded: result.degraded,
          }
        : { token: undefined },
    ),
    forgetToken: assign({ token: undefined }),
    confirmSession: assign({ degraded: false }),
    addStrike: assign({ strikes: ({ context }) => context.strikes + 1 }),
    takeSendToken: assign(({ context, event }) => ({
      buckets: takeSend(context.buckets, context.limits, context.now(), frameBytes(event)),
    })),
    takeSignalToken: assign(({ context }) => ({
      buckets: {
        sendTokens: sendTokensNow(context),
        sendBytes: sendBytesNow(context),
        signals: signalTokensNow(context) - 1,
        at: context.now(),
      },
    })),
    rememberRefreshId: assign({
      refreshId: ({ event }) => (event.type === 'frame.refresh' ? event.id : undefined),
    }),
    holdFrame: assign({
      held: ({ context, event }) => [...context.held, event as SessionFrameEvent],
    }),
    replayHeldFrames,
    addRoom: assign({ joined: ({ context }, room: string) => [...context.joined, room] }),
    removeRoom: assign({
      joined: ({ context }, room: string) => context.joined.filter((r) => r !== room),
    }),
    /** After a refresh: take the new claims; rooms the new token no longer grants are left. */
    applyRefresh: assign(({ context }, result: VerifyResult) =>
      result.outcome === 'ok'
        ? {
            exp: result.claims.exp,
            rooms: result.claims.rooms,
            jti: result.claims.jti,
            iat: result.claims.iat,
            degraded: result.degraded,
            joined: context.joined.filter((room) => isAllowed(result.claims.rooms, room)),
          }
        : {},
    ),
    renewToken: raise({ type: 'token.renewed' }),

    // Effects, provided by src/gateway/session.ts.
    sendWelcome: effect,
    /**
     * The token the last `verifyToken` checked was accepted for this session: a degraded one is
     * held for the re-check, a confirmed one replaces (clears) what was held.
     */
    adoptCheckedToken: (_, _p: { degraded: boolean }) => {},
    /** The token the last `verifyToken` checked was refused: what was held stays as it was. */
    dropCheckedToken: effect,
    sendAck: (_, _p: { id: FrameId }) => {},
    sendError: (_, _p: ErrorParams) => {},
    sendPong: (_, _p: { id?: FrameId }) => {},
    sendExpiring: effect,
    sendRefreshAck: (_, _p: { id: FrameId; exp: number }) => {},
    subscribeRoomAndAck: (_, _p: { room: string; id: FrameId; since?: string }) => {},
    unsubscribeRooms: (_, _p: { rooms: readonly string[] }) => {},
    releaseInterests: effect,
    /** Publishes a signal (never stored); acks only when the frame had an `id`. */
    publishSignal: (_, _p: { id?: FrameId; to: Destination; body: unknown }) => {},
    /** Answers a `presence` frame with the users in the room, fleet-wide. */
    answerPresence: (_, _p: { id: FrameId; room: string }) => {},
    publishAndAck: (_, _p: { id: FrameId; to: Destination; body: unknown; key?: string }) => {},
    sendHistory: (_, _p: { id: FrameId; room?: string; before?: string; limit: number }) => {},
    closeSocket: effect,
    terminateSocket: effect,
  },
}).createMachine({
  id: 'connection',
  description:
    'One WebSocket connection: waits for a token, has it checked (auth service or, degraded, locally), subscribes the user, then serves frames until it closes with a contract close code.',
  context: ({ input }) => ({
    session: input.session,
    now: input.now,
    limits: limitsOf(input.limits),
    token: input.token,
    user: undefined,
    exp: undefined,
    rooms: [],
    joined: [],
    degraded: false,
    jti: undefined,
    iat: undefined,
    held: [],
    since: input.since,
    refreshId: undefined,
    strikes: 0,
    buckets: {
      sendTokens: input.limits?.sendBurst ?? defaultConnectionLimits.sendBurst,
      sendBytes: input.limits?.sendBytesBurst ?? defaultConnectionLimits.sendBytesBurst,
      signals: input.limits?.signalBurst ?? defaultConnectionLimits.signalBurst,
      at: input.now(),
    },
    closeCode: undefined,
    closeReason: undefined,
  }),
  initial: 'open',
  states: {
    open: {
      initial: 'awaitingAuth',
      on: {
        'socket.closed': {
          target: 'closed',
          actions: { type: 'recordPeerClose', params: ({ event }) => ({ code: event.code }) },
        },
        'heartbeat.lost': {
          target: 'closed',
          actions: [
            { type: 'closeWith', params: { code: CloseCode.abnormalClosure, reason: 'heartbeat lost' } },
            'terminateSocket',
          ],
        },
        'frame.binary': {
          target: 'closing',
          actions: {
            type: 'closeWith',
            params: { code: CloseCode.unsupportedData, reason: 'binary frames are not supported' },
          },
        },
        'frame.tooLarge': {
          target: 'closing',
          actions: {
            type: 'closeWith',
            params: { code: CloseCode.messageTooBig, reason: 'frame too large' },
          },
        },
        'socket.slow': {
          target: 'closing',
          actions: {
            type: 'closeWith',
            params: { code: CloseCode.slowConsumer, reason: 'slow consumer' },
          },
        },
        'node.shutdown': {
          target: 'closing',
          actions: {
            type: 'closeWith',
            params: { code: CloseCode.goingAway, reason: 'node going away' },
          },
        },
        // A ping takes from the send bucket, in every state (before authentication too): over the
        // rate it is refused and a strike, so a client cannot make the node answer without end.
        'frame.ping': [
          ...refusePingOverRate,
          { actions: ['takeSendToken', { type: 'sendPong', params: ({ event }) => ({ id: event.id }) }] },
        ],
        'frame.invalid': [
          {
            guard: 'isAbusive',
            target: 'closing',
            actions: {
              type: 'closeWith',
              params: { code: CloseCode.policyViolation, reason: 'too many malformed frames' },
            },
          },
          {
            actions: [
              'addStrike',
              {
                type: 'sendError',
                params: ({ event }) => ({
                  id: event.id,
                  code: ErrorCode.badRequest,
                  message: event.reason,
                }),
              },
            ],
          },
        ],
      },
      states: {
        awaitingAuth: {
          always: { guard: 'hasToken', target: 'authenticating' },
          after: {
            authTimeout: {
              target: '#connection.closing',
              actions: {
                type: 'closeWith',
                params: { code: CloseCode.authTimeout, reason: 'authentication timed out' },
              },
            },
          },
          on: {
            'frame.auth': {
              target: 'authenticating',
              actions: [
                { type: 'storeToken', params: ({ event }) => event.token },
                { type: 'storeSince', params: ({ event }) => event.since },
              ],
            },
            // Each one counts as a strike: a client cannot make the node answer without end.
            ...forSessionFrames([
              {
                guard: 'isAbusive',
                target: '#connection.closing',
                actions: {
                  type: 'closeWith',
                  params: { code: CloseCode.policyViolation, reason: 'too many frames before authentication' },
                },
              },
              {
                actions: [
                  'addStrike',
                  {
                    type: 'sendError',
                    params: ({ event }: { event: SessionFrameEvent }) => ({
                      id: event.id,
                      code: ErrorCode.unauthorized,
                      message: 'authenticate first',
                    }),
                  },
                ],
              },
            ] as const),
          },
        },
        authenticating: {
          initial: 'checkingToken',
          // However the check ends, the raw token does not stay in the context.
          exit: 'forgetToken',
          states: {
            checkingToken: {
              invoke: {
                src: 'verifyToken',
                input: ({ context }) => ({ token: context.token ?? '', session: context.session }),
                onDone: [
                  {
                    guard: { type: 'isVerified', params: ({ event }) => event.output },
                    target: 'subscribing',
                    actions: [
                      {
                        type: 'adoptCheckedToken',
                        params: ({ event }) => ({ degraded: event.output.outcome === 'ok' && event.output.degraded }),
                      },
                      { type: 'acceptSession', params: ({ event }) => event.output },
                    ],
                  },
                  {
                    guard: {
                      type: 'isOutcome',
                      params: ({ event }) => ({ result: event.output, outcome: 'expired' as const }),
                    },
                    target: '#connection.closing',
                    actions: [
                      'forgetToken',
                      {
                        type: 'closeWith',
                        params: { code: CloseCode.tokenExpired, reason: 'token expired' },
                      },
                    ],
                  },
                  {
                    guard: {
                      type: 'isOutcome',
                      params: ({ event }) => ({
                        result: event.output,
                        outcome: 'unavailable' as const,
                      }),
                    },
                    target: '#connection.closing',
                    actions: [
                      'forgetToken',
                      {
                        type: 'closeWith',
                        params: { code: CloseCode.tryAgainLater, reason: 'auth service unavailable' },
                      },
                    ],
                  },
                  {
                    target: '#connection.closing',
                    actions: [
                      'forgetToken',
                      {
                        type: 'closeWith',
                        params: { code: CloseCode.invalidToken, reason: 'invalid token' },
                      },
                    ],
                  },
                ],
                onError: {
                  target: '#connection.closing',
                  actions: [
                    'forgetToken',
                    {
                      type: 'closeWith',
                      params: { code: CloseCode.internalError, reason: 'internal error' },
                    },
                  ],
                },
              },
            },
            /** The user's NATS subscription is being put in place; then the welcome. */
            subscribing: {
              invoke: {
                src: 'subscribeUser',
                input: ({ context }) => ({ session: context.session, user: context.user ?? '', since: context.since }),
                onDone: '#connection.open.active',
                onError: [
                  {
                    guard: { type: 'isTooManySessions', params: ({ event }: { event: { error: unknown } }) => event.error },
                    target: '#connection.closing',
                    actions: {
                      type: 'closeWith',
                      params: { code: CloseCode.tryAgainLater, reason: 'too many sessions' },
                    },
                  },
                  {
                    target: '#connection.closing',
                    actions: {
                      type: 'closeWith',
                      params: { code: CloseCode.tryAgainLater, reason: 'messaging unavailable' },
                    },
                  },
                ],
              },
            },
          },
          on: {
            'frame.auth': refuseFrame(() => ({ code: ErrorCode.badRequest, message: 'already authenticating' })),
            ...forSessionFrames([
              {
                guard: 'isHoldFull',
                target: '#connection.closing',
                actions: {
                  type: 'closeWith',
                  params: {
                    code: CloseCode.policyViolation,
                    reason: 'too many frames before authentication',
                  },
                },
              },
              { actions: 'holdFrame' },
            ] as const),
          },
        },
        active: {
          type: 'parallel',
          entry: ['sendWelcome', 'replayHeldFrames'],
          on: {
            'frame.auth': refuseFrame(() => ({ code: ErrorCode.badRequest, message: 'already authenticated' })),
            'frame.send': [
              ...refuseOverRate,
              // One guard for both room refusals (not joined, or only `r`): the path of every
              // accepted send evaluates it, so it stays one cheap check.
              {
                guard: { type: 'isToUnwritableRoom', params: ({ event }) => event.to },
                actions: [
                  'takeSendToken',
                  'addStrike',
                  {
                    type: 'sendError',
                    params: ({ context, event }) => ({
                      id: event.id,
                      code: ErrorCode.forbidden,
                      message:
                        'room' in event.to && context.joined.includes(event.to.room)
                          ? 'this token may only read this room'
                          : 'join the room before sending to it',
                    }),
                  },
                ],
              },
              {
                actions: [
                  'takeSendToken',
                  {
                    type: 'publishAndAck',
                    params: ({ event }) => ({ id: event.id, to: event.to, body: event.body, key: event.key }),
                  },
                ],
              },
            ],
            // Every join takes a token from the send bucket, also one of a room already joined
            // (acked, nothing else to do): no frame is answered at no cost.
            'frame.join': [
              ...refuseOverRate,
              {
                guard: { type: 'isRoomJoined', params: ({ event }) => event.room },
                actions: ['takeSendToken', { type: 'sendAck', params: ({ event }) => ({ id: event.id }) }],
              },
              ...refuseFrame<SessionFrameEvent>(
                ({ context, event }) => ({
                  id: event.id,
                  code: ErrorCode.forbidden,
                  message: `room limit reached (${context.limits.maxRooms})`,
                }),
                'isRoomLimitReached',
              ),
              {
                guard: { type: 'isRoomAllowed', params: ({ event }) => event.room },
                actions: [
                  'takeSendToken',
                  { type: 'addRoom', params: ({ event }) => event.room },
                  {
                    type: 'subscribeRoomAndAck',
                    params: ({ event }) => ({ room: event.room, id: event.id, since: event.since }),
                  },
                ],
              },
              ...refuseUngrantedRoom,
            ],
            // The join's effect failed after the room was added: the session leaves it again (a
            // repeated join then resumes anew) and is told `unavailable`.
            'join.failed': [
              {
                guard: { type: 'isRoomJoined', params: ({ event }) => event.room },
                actions: [
                  { type: 'removeRoom', params: ({ event }) => event.room },
                  { type: 'unsubscribeRooms', params: ({ event }) => ({ rooms: [event.room] }) },
                  {
                    type: 'sendError',
                    params: ({ event }) => ({ id: event.id, code: ErrorCode.unavailable, message: 'NATS is not reachable' }),
                  },
                ],
              },
              {
                actions: {
                  type: 'sendError',
                  params: ({ event }) => ({ id: event.id, code: ErrorCode.unavailable, message: 'NATS is not reachable' }),
                },
              },
            ],
            // Every leave takes a token from the send bucket, also one of a granted room not joined
            // (acked, nothing else to do).
            'frame.leave': [
              ...refuseOverRate,
              {
                guard: { type: 'isRoomJoined', params: ({ event }) => event.room },
                actions: [
                  'takeSendToken',
                  { type: 'removeRoom', params: ({ event }) => event.room },
                  { type: 'unsubscribeRooms', params: ({ event }) => ({ rooms: [event.room] }) },
                  { type: 'sendAck', params: ({ event }) => ({ id: event.id }) },
                ],
              },
              {
                guard: { type: 'isRoomAllowed', params: ({ event }) => event.room },
                actions: ['takeSendToken', { type: 'sendAck', params: ({ event }) => ({ id: event.id }) }],
              },
              ...refuseUngrantedRoom,
            ],
            // Signals have their own bucket; to a room, the session must have joined it with `rw`.
            'frame.signal': [
              ...refuseFrame<SessionFrameEvent & { type: 'frame.signal' }>(
                ({ context, event }) => ({
                  id: event.id,
                  code: ErrorCode.rateLimited,
                  message: 'too many signals',
                  retryAfterMs: Math.max(
                    0,
                    Math.ceil(((1 - signalTokensNow(context)) / context.limits.signalsPerSecond) * 1000),
                  ),
                }),
                'isOverSignalRate',
              ),
              ...refuseFrame<SessionFrameEvent & { type: 'frame.signal' }>(
                ({ event }) => ({
                  id: event.id,
                  code: ErrorCode.forbidden,
                  message: 'join the room before signalling to it',
                }),
                { type: 'isToUnjoinedRoom', params: ({ event }: { event: { to: Destination } }) => event.to },
              ),
              ...refuseFrame<SessionFrameEvent & { type: 'frame.signal' }>(
                ({ event }) => ({
                  id: event.id,
                  code: ErrorCode.forbidden,
                  message: 'this token may only read this room',
                }),
                { type: 'isToReadOnlyRoom', params: ({ event }: { event: { to: Destination } }) => event.to },
              ),
              {
                actions: [
                  'takeSignalToken',
                  {
                    type: 'publishSignal',
                    params: ({ event }) => ({ id: event.id, to: event.to, body: event.body }),
                  },
                ],
              },
            ],
            // Presence of a granted room (joined or not) costs one send token.
            'frame.presence': [
              ...refuseOverRate,
              ...refuseFrame<SessionFrameEvent & { type: 'frame.presence' }>(
                ({ event }) => ({ id: event.id, code: ErrorCode.forbidden, message: 'the token does not grant this room' }),
                { type: 'isRoomDenied', params: ({ event }: { event: { room: string } }) => event.room },
              ),
              {
                actions: [
                  'takeSendToken',
                  { type: 'answerPresence', params: ({ event }) => ({ id: event.id, room: event.room }) },
                ],
              },
            ],
            // A page of stored messages: the user's own inbox, or a room the token grants.
            'frame.history': [
              ...refuseOverRate,
              {
                guard: { type: 'isHistoryAllowed', params: ({ event }) => event.room },
                actions: [
                  'takeSendToken',
                  {
                    type: 'sendHistory',
                    params: ({ event }) => ({ id: event.id, room: event.room, before: event.before, limit: event.limit }),
                  },
                ],
              },
              ...refuseUngrantedRoom,
            ],
            'session.confirmed': { actions: 'confirmSession' },
            'session.revoked': {
              target: '#connection.closing',
              actions: {
                type: 'closeWith',
                params: { code: CloseCode.invalidToken, reason: 'token revoked' },
              },
            },
          },
          states: {
            token: {
              initial: 'valid',
              on: { 'token.renewed': { target: '.valid', reenter: true } },
              states: {
                valid: {
                  after: {
                    untilExpiring: [
                      { guard: 'isExpiringSoon', target: 'expiring', actions: 'sendExpiring' },
                      // The wait was longer than one timer can be: arm it again.
                      { target: 'valid', reenter: true },
                    ],
                  },
                },
                expiring: {
                  after: {
                    untilExpiry: [
                      {
                        guard: 'isTokenExpired',
                        target: '#connection.closing',
                        actions: {
                          type: 'closeWith',
                          params: { code: CloseCode.tokenExpired, reason: 'token expired' },
                        },
                      },
                      { target: 'expiring', reenter: true },
                    ],
                  },
                },
              },
            },
            refresh: {
              initial: 'idle',
              states: {
                idle: {
                  on: {
                    // A refresh asks the auth service, so it takes from the send bucket too.
                    'frame.refresh': [
                      ...refuseOverRate,
                      { target: 'verifying', actions: ['takeSendToken', 'rememberRefreshId'] },
                    ],
                  },
                },
                verifying: {
                  invoke: {
                    src: 'verifyToken',
                    input: ({ context, event }) => ({
                      token: event.type === 'frame.refresh' ? event.token : '',
                      session: context.session,
                    }),
                    onDone: [
                      {
                        guard: { type: 'isSameUser', params: ({ event }) => event.output },
                        target: 'idle',
                        actions: [
                          {
                            type: 'adoptCheckedToken',
                            params: ({ event }) => ({
                              degraded: event.output.outcome === 'ok' && event.output.degraded,
                            }),
                          },
                          {
                            type: 'unsubscribeRooms',
                            params: ({ context, event }) => ({
                              rooms:
                                event.output.outcome === 'ok'
                                  ? ungrantedRooms(context.joined, event.output.claims.rooms)
                                  : [],
                            }),
                          },
                          { type: 'applyRefresh', params: ({ event }) => event.output },
                          {
                            type: 'sendRefreshAck',
                            params: ({ context }) => ({
                              id: context.refreshId ?? '',
                              exp: context.exp ?? 0,
                            }),
                          },
                          'renewToken',
                        ],
                      },
                      {
                        guard: {
                          type: 'isOutcome',
                          params: ({ event }) => ({
                            result: event.output,
                            outcome: 'unavailable' as const,
                          }),
                        },
                        target: 'idle',
                        actions: [
                          'dropCheckedToken',
                          {
                            type: 'sendError',
                            params: ({ context }) => ({
                              id: context.refreshId,
                              code: ErrorCode.unavailable,
                              message: 'the auth service cannot be asked now',
                            }),
                          },
                        ],
                      },
                      // Refused for the client's token (another user's, invalid): a strike.
                      {
                        guard: 'isAbusive',
                        target: '#connection.closing',
                        actions: [
                          'dropCheckedToken',
                          {
                            type: 'closeWith',
                            params: { code: CloseCode.policyViolation, reason: 'too many refused frames' },
                          },
                        ],
                      },
                      {
                        guard: { type: 'isVerified', params: ({ event }) => event.output },
                        target: 'idle',
                        actions: [
                          'dropCheckedToken',
                          'addStrike',
                          {
                            type: 'sendError',
                            params: ({ context }) => ({
                              id: context.refreshId,
                              code: ErrorCode.forbidden,
                              message: 'the new token is for another user',
                            }),
                          },
                        ],
                      },
                      {
                        target: 'idle',
                        actions: [
                          'dropCheckedToken',
                          'addStrike',
                          {
                            type: 'sendError',
                            params: ({ context }) => ({
                              id: context.refreshId,
                              code: ErrorCode.unauthorized,
                              message: 'invalid token',
                            }),
                          },
                        ],
                      },
                    ],
                    onError: {
                      target: 'idle',
                      actions: [
                        'dropCheckedToken',
                        {
                        type: 'sendError',
                        params: ({ context }) => ({
                          id: context.refreshId,
                          code: ErrorCode.internal,
                          message: 'internal error',
                        }),
                        },
                      ],
                    },
                  },
                  on: {
                    'frame.refresh': refuseFrame<SessionFrameEvent>(({ event }) => ({
                      id: event.id,
                      code: ErrorCode.badRequest,
                      message: 'a refresh is already in progress',
                    })),
                  },
                },
              },
            },
          },
        },
      },
    },
    closing: {
      entry: ['releaseInterests', 'closeSocket'],
      on: { 'socket.closed': 'closed' },
      after: { closeGrace: { target: 'closed', actions: 'terminateSocket' } },
    },
    closed: { type: 'final', entry: 'releaseInterests' },
  },
});

export type ConnectionMachine = typeof connectionMachine;
