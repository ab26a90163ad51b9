/**
 * One WebSocket connection on a gateway node: the socket, its connection actor, and the effects
 * the connection machine names (writing frames, NATS interest, publishing, closing), provided to
 * the pure machine with `machine.provide(...)`.
 */
import { createActor, fromPromise, type ActorRefFrom, type InspectionEvent } from 'xstate';
import { WebSocket, type RawData } from 'ws';
import { nuid, type NatsConnection } from '@nats-io/nats-core';
import {
  acceptsSendsFast,
  connectionMachine,
  sendVerdict,
  takeSend,
  tooManySessions,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionInput,
  type ConnectionLimits,
  type Destination,
  type FrameId,
} from '../../machines/connection.machine.ts';
import { ErrorCode, type ErrorCodeValue } from '../../machines/codes.ts';
import { decodeClientFrame, encodeServerFrame, type ServerFrame } from './codec.ts';
import type { SignalPublisher } from './signals.ts';
import type { Presence } from './presence.ts';
import type { Interest, Member } from './interest.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import type { Observers } from '../observe/observe.ts';
import { subjects } from '../subjects.ts';
import type { TokenVerifier } from '../auth/tokens.ts';
import type { UserSendBudget } from './user-send-budget.ts';
import type { Delivery, DeliveryMember } from '../durable/delivery.ts';
import type { ActorEnded, ActorShards, Shard } from './actor-shards.ts';

/** What a node shares with its sessions. */
export interface NodeContext {
  nodeId: string;
  nc: NatsConnection;
  sessions: Map<string, Session>;
  interest: Interest<Session>;
  /** Publishing, live delivery, resume and history (src/durable/delivery.ts). */
  delivery: Delivery;
  verify: TokenVerifier;
  /** Signals: published like messages, never stored (signals.ts). */
  signals: SignalPublisher;
  /** The fleet's presence, fed by this node's joins and leaves (presence.ts). */
  presence: Presence;
  log: Logger;
  limits: ConnectionLimits;
  /** @default 5000 */
  authTimeoutMs: number;
  /** Outgoing bytes a socket may hold before it is closed with 4009. */
  maxBufferedBytes: number;
  /** Sessions one user may have on this node; one more closes with 1013 once authenticated. */
  maxSessionsPerUser: number;
  /** Sessions per user on this node, kept by the sessions themselves (see `openSession`). */
  userSessions: Map<string, number>;
  /** Bytes each user's sessions on this node may send together (user-send-budget.ts). */
  userSendBudget: UserSendBudget;
  metrics: Metrics;
  /** Holds the tokens of sessions admitted without the auth service, until they are re-checked (degraded.ts). */
  degraded: {
    hold(session: Session, token: string | undefined): void;
    release(session: Session): void;
  };
  /** When set, each actor reports what it lives through (inspector page, recorder). */
  observers?: Observers;
  /** The actor systems the sessions' actors share (actor-shards.ts). */
  shards: ActorShards;
}

export type ConnectionActor = ActorRefFrom<typeof connectionMachine>;

export class Session implements Member, DeliveryMember {
  readonly id: string;
  readonly subjects = new Set<string>();
  readonly ws: WebSocket;
  readonly startedAt = Date.now();
  /** The same, on the monotonic clock observations count from. */
  readonly startedPerf = performance.now();
  /** The actor system this session's actor belongs to, until released. */
  shard: Shard | undefined;
  readonly node: NodeContext;
  #log: Logger | undefined;
  #user: string | undefined;
  actor!: ConnectionActor;
  /**
   * The token `verifyToken` last checked, until the machine says whether it was accepted
   * (`adoptCheckedToken`) or refused (`dropCheckedToken`). Never logged.
   */
  checkedToken: string | undefined;
  /** The user this session counts against in `NodeContext.userSessions`, once admitted. */
  countedUser: string | undefined;
  /** Cleared by each heartbeat sweep, set again by a pong or any frame. */
  alive = true;
  /** Sends published and not yet answered (`ack` or `error`): a drain closes the session after them. */
  acksInFlight = 0;
  /** Made on first use: most sessions never wait for their acks. */
  #acksSettled: Array<() => void> | undefined;

  /** Counts one answer owed to a send; call the returned function once it is written. */
  owesAck(): () => void {
    this.acksInFlight++;
    return () => {
      this.acksInFlight--;
      if (this.acksInFlight === 0 && this.#acksSettled) {
        const waiting = this.#acksSettled;
        this.#acksSettled = undefined;
        for (const wake of waiting) wake();
      }
    };
  }

  /** Resolves once no send of this session waits for its answer. */
  acksSettled(): Promise<void> {
    return this.acksInFlight === 0 ? Promise.resolve() : new Promise((resolve) => (this.#acksSettled ??= []).push(resolve));
  }
  /** Rooms this session counts in presence (joined and subscribed); made on first use. */
  #presentIn: Set<string> | undefined;
  /** The user inbox's resume, from `subscribeUser` until the welcome writes it. */
  resumed: { recovered?: boolean; pos?: string; flush: (between?: () => void) => void } | undefined;

  constructor(ws: WebSocket, node: NodeContext) {
    this.id = nuid.next();
    this.ws = ws;
    this.node = node;
  }

  /**
   * This session's child logger (`session`, and `user` once known), made when the session first
   * logs: most sessions log only their close, and a pino child per idle session costs memory.
   */
  get log(): Logger {
    return (this.#log ??= this.node.log.child(
      this.#user === undefined ? { session: this.id } : { session: this.id, user: this.#user },
    ));
  }

  /** Adds `user` to every later log line of this session. */
  setUser(user: string): void {
    this.#user = user;
    if (this.#log) this.#log = this.#log.child({ user });
  }

  /**
   * Writes one text frame, or closes the session with 4009 when the socket cannot keep up: the
   * bytes ws holds for this socket never grow past `maxBufferedBytes` plus one frame.
   */
  write(data: string | Buffer, type: ServerFrame['type'] | 'message' | 'history' | 'signal'): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    if (this.ws.bufferedAmount > this.node.maxBufferedBytes) {
      this.actor.send({ type: 'socket.slow' });
      return false;
    }
    this.ws.send(data, { binary: false });
    this.node.metrics.frameOut(type);
    return true;
  }

  send(frame: ServerFrame): void {
    this.write(encodeServerFrame(frame), frame.type);
  }

  /** Counts this session in `room`'s presence (once). */
  present(presence: Presence, room: string): void {
    if (this.countedUser === undefined || this.#presentIn?.has(room)) return;
    (this.#presentIn ??= new Set()).add(room);
    presence.add(room, this.countedUser);
  }

  /** Takes this session out of `room`'s presence, if it counted there. */
  absent(presence: Presence, room: string): void {
    if (this.#presentIn?.delete(room) && this.countedUser !== undefined) presence.remove(room, this.countedUser);
  }

  absentEverywhere(presence: Presence): void {
    if (this.#presentIn) for (const room of [...this.#presentIn]) this.absent(presence, room);
  }

  /** The node could not keep this session's messages whole: it closes with 4009 and resumes. */
  lost(): void {
    this.actor.send({ type: 'socket.slow' });
  }
}

/** Answers a frame with an `error` (and counts a rate-limited one). */
function answerError(
  node: NodeContext,
  session: Session,
  code: ErrorCodeValue,
  message: string,
  id?: FrameId,
  retryAfterMs?: number,
): void {
  // Debug only: every refusal is a strike, and the session's close says why it ended.
  if (node.log.isLevelEnabled('debug')) session.log.debug({ code, reason: message }, 'frame refused');
  if (code === ErrorCode.rateLimited) node.metrics.rateLimited('send');
  const frame: ServerFrame = { type: 'error', code, message };
  if (id !== undefined) frame.id = id;
  if (retryAfterMs !== undefined) frame.retryAfterMs = retryAfterMs;
  session.send(frame);
}

/**
 * An accepted `send`: published, then acked (or answered with `unavailable`). The effect
 * `publishAndAck` of the machine, and the whole of the fast path (see `openSession`): one body
 * for both. `bytes` come out of the user's budget on this node (undefined: not a `send` frame).
 */
function publishSend(
  node: NodeContext,
  session: Session,
  user: string,
  id: FrameId,
  to: Destination,
  body: unknown,
  key: string | undefined,
  bytes: number | undefined,
): void {
  const nc = node.nc;
  if (nc.isClosed() || nc.isDraining()) {
    answerError(node, session, ErrorCode.unavailable, 'NATS is not reachable', id);
    return;
  }
  // The machine let the frame through: its bytes come out of the user's budget on this node.
  if (bytes !== undefined) node.userSendBudget.take(user, bytes);
  // Room messages skip the sending session; user messages reach every session of the user.
  const origin = 'room' in to ? session.id : '';
  // Acked once the NATS server has it (ephemeral) or the stream stored it (durable): publish.ts.
  // Counted until answered: a drain (drain.ts) closes the session after its acks in flight.
  const answered = session.owesAck();
  node.delivery.publish(session, { from: user, to, body, origin, key }).then(
    ({ msgId, pos }) => session.send(pos === undefined ? { type: 'ack', id, msgId } : { type: 'ack', id, msgId, pos }),
    () => answerError(node, session, ErrorCode.unavailable, 'NATS is not reachable', id),
  ).finally(answered);
}

/** The connection machine with this node's effects. */
export function connectionLogic(node: NodeContext) {
  const { interest, signals, presence } = node;
  /**
   * The one place an effect finds its session: by the id the actor carries. A session that has
   * already ended (its socket closed, the node forgot it) gets nothing done.
   */
  const sessionOf = (id: string): Session | undefined => node.sessions.get(id);
  const withSession =
    <P>(effect: (session: Session, context: ConnectionContext, params: P) => void) =>
    ({ context }: { context: ConnectionContext }, params: P): void => {
      const session = sessionOf(context.session);
      if (session) effect(session, context, params);
    };
  const replyError = (session: Session, code: ErrorCodeValue, message: string, id?: FrameId, retryAfterMs?: number) =>
    answerError(node, session, code, message, id, retryAfterMs);

  return connectionMachine.provide({
    actors: {
      verifyToken: fromPromise(async ({ input }: { input: { token: string; session: string } }) => {
        const result = await node.verify(input.token);
        const session = sessionOf(input.session);
        // Kept until the machine decides: only an accepted token replaces the held one.
        if (session) session.checkedToken = result.outcome === 'ok' ? input.token : undefined;
        return result;
      }),
      subscribeUser: fromPromise(async ({ input }: { input: { session: string; user: string; since?: string } }) => {
        const session = sessionOf(input.session);
        if (!session) return;
        session.setUser(input.user);
        const count = node.userSessions.get(input.user) ?? 0;
        if (count >= node.maxSessionsPerUser) throw tooManySessions;
        node.userSessions.set(input.user, count + 1);
        session.countedUser = input.user;
        const subject = subjects.user(input.user);
        session.resumed = await node.delivery.join(session, subject, input.since, () => interest.join(subject, session));
      }),
    },
    delays: { authTimeout: node.authTimeoutMs },
    actions: {
      // A session admitted without the auth service keeps its token until the service re-checks it.
      adoptCheckedToken: withSession((session, _context, { degraded }: { degraded: boolean }) => {
        node.degraded.hold(session, degraded ? session.checkedToken : undefined);
        session.checkedToken = undefined;
      }),
      dropCheckedToken: withSession((session) => {
        session.checkedToken = undefined;
      }),
      // With `since`, the inbox's replay follows the welcome at once, then its live messages.
      sendWelcome: withSession((session, context) => {
        const resumed = session.resumed;
        session.resumed = undefined;
        const welcome: ServerFrame = {
          type: 'welcome',
          session: context.session,
          user: context.user!,
          node: node.nodeId,
          exp: context.exp!,
          degraded: context.degraded,
        };
        if (resumed?.recovered !== undefined) welcome.recovered = resumed.recovered;
        if (resumed?.pos !== undefined) welcome.pos = resumed.pos;
        session.send(welcome);
        resumed?.flush();
      }),
      sendAck: withSession((session, _context, { id }: { id: FrameId }) => session.send({ type: 'ack', id })),
      sendError: withSession(
        (session, _context, { id, code, message, retryAfterMs }: { id?: FrameId; code: ErrorCodeValue; message: string; retryAfterMs?: number }) =>
          replyError(session, code, message, id, retryAfterMs),
      ),
      sendPong: withSession((session, _context, { id }: { id?: FrameId }) =>
        session.send(id === undefined ? { type: 'pong' } : { type: 'pong', id }),
      ),
      sendExpiring: withSession((session, context) => session.send({ type: 'expiring', exp: context.exp! })),
      sendRefreshAck: withSession((session, _context, { id, exp }: { id: FrameId; exp: number }) =>
        session.send({ type: 'ack', id, exp }),
      ),
      // With `since`: the room's replay, then the ack with `recovered` (and `pos`), then its live
      // messages. A join that fails is undone (`join.failed`): never joined without its replay.
      subscribeRoomAndAck: withSession((session, _context, { room, id, since }: { room: string; id: FrameId; since?: string }) => {
        const subject = subjects.room(room);
        node.delivery.join(session, subject, since, () => interest.join(subject, session)).then(
          ({ recovered, pos, flush }) => {
            const ack: ServerFrame = { type: 'ack', id };
            if (recovered !== undefined) ack.recovered = recovered;
            if (pos !== undefined) ack.pos = pos;
            flush(() => session.send(ack));
            // Still joined (not left or closed meanwhile): the session counts in the room's presence.
            if (session.subjects.has(subject)) session.present(presence, room);
          },
          () => session.actor.send({ type: 'join.failed', room, id }),
        );
      }),
      unsubscribeRooms: withSession((session, _context, { rooms }: { rooms: readonly string[] }) => {
        for (const room of rooms) {
          interest.leave(subjects.room(room), session);
          node.delivery.leave(session, subjects.room(room));
          session.absent(presence, room);
        }
      }),
      releaseInterests: withSession((session) => {
        interest.leaveAll(session);
        node.delivery.leave(session);
        session.absentEverywhere(presence);
      }),
      publishSignal: withSession((session, context, { id, to, body }: { id?: FrameId; to: Destination; body: unknown }) => {
        // Like a message: a room signal skips the sending session.
        const origin = 'room' in to ? session.id : '';
        signals.publishSignal({ origin, from: context.user!, to, body }).then(
          () => {
            if (id !== undefined) session.send({ type: 'ack', id });
          },
          () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
        );
      }),
      answerPresence: withSession((session, _context, { id, room }: { id: FrameId; room: string }) => {
        presence.query(room).then(
          ({ count, users }) => session.send({ type: 'presence', id, room, count, users }),
          () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
        );
      }),
      // A page of stored messages (durable delivery): the own inbox, or a room the machine found granted.
      sendHistory: withSession(
        (session, context, { id, room, before, limit }: { id: FrameId; room?: string; before?: string; limit: number }) => {
          if (!node.delivery.store) {
            replyError(session, ErrorCode.unavailable, 'history needs durable delivery (DELIVERY=durable)', id);
            return;
          }
          const target = room === undefined ? { user: context.user! } : { room };
          node.delivery.history(id, target, before, limit).then(
            (text) =>
              text === undefined
                ? replyError(session, ErrorCode.badRequest, 'before: not a position of this destination', id)
                : session.write(text, 'history'),
            () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
          );
        },
      ),
      // A chat message, sending side: session → (machine decided) → publishChat → bus. Delivery: relay.ts.
      publishAndAck: (
        { context, event }: { context: ConnectionContext; event: ConnectionEvent },
        { id, to, body, key }: { id: FrameId; to: Destination; body: unknown; key?: string },
      ) => {
        const session = sessionOf(context.session);
        if (session) publishSend(node, session, context.user!, id, to, body, key, event.type === 'frame.send' ? (event.bytes ?? 0) : undefined);
      },
      closeSocket: withSession((session, context) => {
        const ws = session.ws;
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
          ws.close(context.closeCode, context.closeReason);
        }
      }),
      terminateSocket: withSession((session) => session.ws.terminate()),
    },
  });
}

export type ConnectionLogic = ReturnType<typeof connectionLogic>;

const frameTypeOf = {
  'frame.auth': 'auth',
  'frame.send': 'send',
  'frame.join': 'join',
  'frame.leave': 'leave',
  'frame.refresh': 'refresh',
  'frame.history': 'history',
  'frame.ping': 'ping',
  'frame.signal': 'signal',
  'frame.presence': 'presence',
  'frame.invalid': 'invalid',
} as const;

/** Each session actor's session, for the inspection its shard routes (`inspectSessions`). */
const sessionOfActor = new WeakMap<object, Session>();

/**
 * The inspection observer of the node's shards while someone observes: each event of a session's
 * own actor becomes an observation of that session; its children's (the invoked promise actors)
 * are not, as with a root actor's `inspect`.
 */
export function inspectSessions(node: NodeContext): (ev: InspectionEvent) => void {
  return (ev) => {
    const session = sessionOfActor.get(ev.actorRef);
    if (!session) return;
    node.observers?.observe(
      ev,
      { machine: 'connection', node: node.nodeId, session: session.id },
      () => session.actor.getSnapshot()?.context.user,
      session.startedPerf,
    );
  };
}

/** Forgets a session that ended: the node's map, its user's count, its place in a shard. */
function releaseSession(node: NodeContext, session: Session): void {
  node.sessions.delete(session.id);
  if (session.shard) {
    node.shards.release(session.shard);
    session.shard = undefined;
  }
  node.degraded.release(session);
  session.checkedToken = undefined;
  const user = session.countedUser;
  if (user === undefined) return;
  session.countedUser = undefined;
  const left = (node.userSessions.get(user) ?? 1) - 1;
  if (left > 0) node.userSessions.set(user, left);
  else {
    node.userSessions.delete(user);
    node.userSendBudget.forget(user);
  }
}

/** The session a socket belongs to, on the socket itself: the socket handlers below are shared by all. */
const SESSION = Symbol('chatgate.session');
type SessionSocket = WebSocket & { [SESSION]: Session };

function onSocketMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  const session = (this as SessionSocket)[SESSION];
  const node = session.node;
  const actor = session.actor;
  session.alive = true;
  if (isBinary) {
    node.metrics.frameIn('binary');
    actor.send({ type: 'frame.binary' });
    return;
  }
  const text = data.toString();
  const event = decodeClientFrame(text);
  // What the frame costs its recipients: counted against the session's send byte bucket.
  if (event.type === 'frame.send') {
    event.bytes = Buffer.isBuffer(data) ? data.length : Buffer.byteLength(text);
    // And against the user's budget on this node; the machine decides (before auth: no user yet).
    const user = session.countedUser;
    if (user !== undefined) event.userRetryAfterMs = node.userSendBudget.retryAfterMs(user, event.bytes);
  }
  node.metrics.frameIn(frameTypeOf[event.type as keyof typeof frameTypeOf] ?? 'invalid');
  // The fast path: a send the machine would accept is taken here, without a macrostep, when
  // nobody observes (an observed or recorded session goes through the machine, so that its
  // recording is complete). The machine stays the authority: `acceptsSendsFast` says which of
  // its states decide a send by `sendVerdict` alone, and `sendVerdict` is what its guards ask;
  // the buckets are updated exactly as `takeSendToken` would, and `publishSend` is the body of
  // its `publishAndAck`. Everything else (refusals, other frames) goes to the actor.
  if (event.type === 'frame.send' && !node.observers?.active) {
    const snapshot = actor.getSnapshot();
    if (acceptsSendsFast(snapshot)) {
      const context = snapshot.context;
      const now = context.now();
      if (sendVerdict(context, now, event) === 'accept') {
        context.buckets = takeSend(context.buckets, context.limits, now, event.bytes ?? 0);
        publishSend(node, session, context.user!, event.id, event.to, event.body, event.key, event.bytes ?? 0);
        return;
      }
    }
  }
  actor.send(event);
}

function onSocketPong(this: WebSocket): void {
  (this as SessionSocket)[SESSION].alive = true;
}

function onSocketError(this: WebSocket, err: Error & { code?: string }): void {
  const session = (this as SessionSocket)[SESSION];
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
    session.node.metrics.frameIn('too_large');
    session.actor.send({ type: 'frame.tooLarge' });
  } else session.log.info({ code: err.code }, 'socket error');
}

function onSocketClose(this: WebSocket, code: number): void {
  const actor = (this as SessionSocket)[SESSION].actor;
  // A machine that ended by itself (heartbeat lost, close grace over) has nothing more to hear.
  if (actor.getSnapshot().status === 'active') actor.send({ type: 'socket.closed', code });
}

/**
 * A session actor ended: the node's one supervisor of its sessions (the shards' actors relay each
 * actor's done and error event here, actor-shards.ts), instead of an observer per session. The
 * actor's id is its session's id (`openSession`).
 */
export function sessionEnded(node: NodeContext, ended: ActorEnded): void {
  const session = node.sessions.get(ended.actorId);
  if (!session) return;
  if (ended.kind === 'done') {
    const context = session.actor.getSnapshot().context;
    releaseSession(node, session);
    node.metrics.closed(context.closeCode);
    session.log.info({ code: context.closeCode, reason: context.closeReason }, 'session closed');
    return;
  }
  // A bug in one connection closes that connection with 1011, never the process.
  session.log.error({ err: ended.error }, 'connection actor failed');
  node.interest.leaveAll(session);
  session.absentEverywhere(node.presence);
  releaseSession(node, session);
  if (session.ws.readyState === WebSocket.OPEN) session.ws.close(1011, 'internal error');
}

/** Starts the actor of a new socket and wires the socket's events to it. */
export function openSession(
  node: NodeContext,
  logic: ConnectionLogic,
  ws: WebSocket,
  token: string | undefined,
  since?: string,
): Session {
  const session = new Session(ws, node);
  node.sessions.set(session.id, session);
  const input: ConnectionInput = { session: session.id, token, now: Date.now, limits: node.limits };
  if (since !== undefined) input.since = since;
  // In a shared actor system (actor-shards.ts), which has an inspection observer while someone
  // observes, and whose actor hears this one end (`sessionEnded`): its id is the session's.
  session.shard = node.shards.acquire();
  const actor = createActor(logic, { id: session.id, input, parent: session.shard.parent });
  sessionOfActor.set(actor, session);
  session.actor = actor;

  if (node.log.isLevelEnabled('debug')) {
    // Only at debug level: an observer per session costs each idle session memory.
    let lastState = '';
    actor.subscribe((snapshot) => {
      const state = JSON.stringify(snapshot.value);
      if (state !== lastState) session.log.debug({ state }, 'transition');
      lastState = state;
    });
  }

  const socket = ws as SessionSocket;
  socket[SESSION] = session;
  socket.on('message', onSocketMessage);
  socket.on('pong', onSocketPong);
  socket.on('error', onSocketError);
  socket.on('close', onSocketClose);

  actor.start();
  // XState keeps `input` for the actor's life; the machine has the token in its context now and
  // forgets it once checked, so the input must not hold it either.
  input.token = undefined;
  if (node.log.isLevelEnabled('debug')) session.log.debug('session opened');
  return session;
}
