/**
 * One WebSocket connection on a gateway node: the socket, its connection actor, and the effects
 * the connection machine names (writing frames, NATS interest, publishing, closing), provided to
 * the pure machine with `machine.provide(...)`.
 */
import { createActor, fromPromise, type ActorRefFrom } from 'xstate';
import { WebSocket, type RawData } from 'ws';
import type { NatsConnection } from '@nats-io/nats-core';
import { nuid } from '@nats-io/nats-core';
import {
  connectionMachine,
  tooManySessions,
  type ConnectionInput,
  type ConnectionLimits,
  type Destination,
  type FrameId,
} from '../../machines/connection.machine.ts';
import { ErrorCode, type ErrorCodeValue } from '../../machines/codes.ts';
import { decodeClientFrame, encodeServerFrame, type ServerFrame } from './codec.ts';
import type { Publisher } from './publish.ts';
import type { Presence } from './presence.ts';
import type { Interest, Member } from './interest.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import type { Observers } from '../observe/observe.ts';
import { subjects } from '../subjects.ts';
import type { TokenVerifier } from '../auth/tokens.ts';

/** What a node shares with its sessions. */
export interface NodeContext {
  nodeId: string;
  nc: NatsConnection;
  sessions: Map<string, Session>;
  interest: Interest<Session>;
  verify: TokenVerifier;
  /** The one publish path of chat messages and signals (publish.ts). */
  publisher: Publisher;
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
  metrics: Metrics;
  /** When set, each actor reports what it lives through (inspector page, recorder). */
  observers?: Observers;
}

export type ConnectionActor = ActorRefFrom<typeof connectionMachine>;

export class Session implements Member {
  readonly id: string;
  readonly subjects = new Set<string>();
  readonly ws: WebSocket;
  readonly startedAt = Date.now();
  readonly #maxBufferedBytes: number;
  readonly #metrics: Metrics;
  readonly #nodeLog: Logger;
  #log: Logger | undefined;
  #user: string | undefined;
  actor!: ConnectionActor;
  /** Only while degraded: the token to re-check once the auth service is back. Never logged. */
  degradedToken: string | undefined;
  /**
   * The token `verifyToken` last checked, until the machine says whether it was accepted
   * (`adoptCheckedToken`) or refused (`dropCheckedToken`). Never logged.
   */
  checkedToken: string | undefined;
  /** The user this session counts against in `NodeContext.userSessions`, once admitted. */
  countedUser: string | undefined;
  /** Cleared by each heartbeat sweep, set again by a pong or any frame. */
  alive = true;
  /** Rooms this session counts in presence (joined and subscribed). */
  readonly presentIn = new Set<string>();

  constructor(ws: WebSocket, node: NodeContext) {
    this.id = nuid.next();
    this.ws = ws;
    this.#nodeLog = node.log;
    this.#maxBufferedBytes = node.maxBufferedBytes;
    this.#metrics = node.metrics;
  }

  /**
   * This session's child logger (`session`, and `user` once known), made when the session first
   * logs: most sessions log only their close, and a pino child per idle session costs memory.
   */
  get log(): Logger {
    return (this.#log ??= this.#nodeLog.child(
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
  write(data: string | Buffer, type: ServerFrame['type'] | 'message' | 'signal'): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    if (this.ws.bufferedAmount > this.#maxBufferedBytes) {
      this.actor.send({ type: 'socket.slow' });
      return false;
    }
    this.ws.send(data, { binary: false });
    this.#metrics.frameOut(type);
    return true;
  }

  send(frame: ServerFrame): void {
    this.write(encodeServerFrame(frame), frame.type);
  }
}

/** The connection machine with this node's effects. */
export function connectionLogic(node: NodeContext) {
  const { interest, publisher, presence } = node;
  /** Takes the session out of a room's presence, if it counted there. */
  const absent = (session: Session, room: string) => {
    if (session.presentIn.delete(room) && session.countedUser !== undefined) presence.remove(room, session.countedUser);
  };
  const sessionOf = (id: string) => node.sessions.get(id);
  const replyError = (
    session: Session | undefined,
    code: ErrorCodeValue,
    message: string,
    id?: FrameId,
    retryAfterMs?: number,
  ) => {
    if (!session) return;
    // Debug only: every refusal is a strike, and the session's close says why it ended.
    session.log.debug({ code, reason: message }, 'frame refused');
    if (code === ErrorCode.rateLimited) node.metrics.rateLimited('send');
    const frame: ServerFrame = { type: 'error', code, message };
    if (id !== undefined) frame.id = id;
    if (retryAfterMs !== undefined) frame.retryAfterMs = retryAfterMs;
    session.send(frame);
  };

  return connectionMachine.provide({
    actors: {
      verifyToken: fromPromise(async ({ input }: { input: { token: string; session: string } }) => {
        const result = await node.verify(input.token);
        const session = sessionOf(input.session);
        // Kept until the machine decides: only an accepted token replaces the held one.
        if (session) session.checkedToken = result.outcome === 'ok' ? input.token : undefined;
        return result;
      }),
      subscribeUser: fromPromise(async ({ input }: { input: { session: string; user: string } }) => {
        const session = sessionOf(input.session);
        if (!session) return;
        session.setUser(input.user);
        const count = node.userSessions.get(input.user) ?? 0;
        if (count >= node.maxSessionsPerUser) throw tooManySessions;
        node.userSessions.set(input.user, count + 1);
        session.countedUser = input.user;
        await interest.join(subjects.user(input.user), session);
      }),
    },
    delays: { authTimeout: node.authTimeoutMs },
    actions: {
      // A session admitted without the auth service keeps its token until the service re-checks it.
      adoptCheckedToken: ({ context }, { degraded }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        session.degradedToken = degraded ? session.checkedToken : undefined;
        session.checkedToken = undefined;
      },
      dropCheckedToken: ({ context }) => {
        const session = sessionOf(context.session);
        if (session) session.checkedToken = undefined;
      },
      sendWelcome: ({ context }) =>
        sessionOf(context.session)?.send({
          type: 'welcome',
          session: context.session,
          user: context.user!,
          node: node.nodeId,
          exp: context.exp!,
          degraded: context.degraded,
        }),
      sendAck: ({ context }, { id }) => sessionOf(context.session)?.send({ type: 'ack', id }),
      sendError: ({ context }, { id, code, message, retryAfterMs }) =>
        replyError(sessionOf(context.session), code, message, id, retryAfterMs),
      sendPong: ({ context }, { id }) =>
        sessionOf(context.session)?.send(id === undefined ? { type: 'pong' } : { type: 'pong', id }),
      sendExpiring: ({ context }) => sessionOf(context.session)?.send({ type: 'expiring', exp: context.exp! }),
      sendRefreshAck: ({ context }, { id, exp }) =>
        sessionOf(context.session)?.send({ type: 'ack', id, exp }),
      subscribeRoomAndAck: ({ context }, { room, id }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        const subject = subjects.room(room);
        interest.join(subject, session).then(
          () => {
            session.send({ type: 'ack', id });
            // Still joined (not left or closed meanwhile): the session counts in the room's presence.
            if (session.subjects.has(subject) && session.countedUser !== undefined && !session.presentIn.has(room)) {
              session.presentIn.add(room);
              presence.add(room, session.countedUser);
            }
          },
          () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
        );
      },
      unsubscribeRooms: ({ context }, { rooms }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        for (const room of rooms) {
          interest.leave(subjects.room(room), session);
          absent(session, room);
        }
      },
      releaseInterests: ({ context }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        interest.leaveAll(session);
        for (const room of [...session.presentIn]) absent(session, room);
      },
      publishAndAck: ({ context }, { id, to, body }: { id: FrameId; to: Destination; body: unknown }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        // Room messages skip the sending session; user messages reach every session of the user.
        const origin = 'room' in to ? session.id : '';
        // Acknowledged only once the NATS server has the message.
        publisher.publishChat({ origin, from: context.user!, to, body }).then(
          (published) => session.send({ type: 'ack', id, ...published }),
          () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
        );
      },
      publishSignal: ({ context }, { id, to, body }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        const origin = 'room' in to ? session.id : '';
        publisher.publishSignal({ origin, from: context.user!, to, body }).then(
          () => {
            if (id !== undefined) session.send({ type: 'ack', id });
          },
          () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
        );
      },
      answerPresence: ({ context }, { id, room }) => {
        const session = sessionOf(context.session);
        if (!session) return;
        presence.query(room).then(
          ({ count, users }) => session.send({ type: 'presence', id, room, count, users }),
          () => replyError(session, ErrorCode.unavailable, 'NATS is not reachable', id),
        );
      },
      closeSocket: ({ context }) => {
        const session = sessionOf(context.session);
        const ws = session?.ws;
        if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) {
          ws.close(context.closeCode, context.closeReason);
        }
      },
      terminateSocket: ({ context }) => sessionOf(context.session)?.ws.terminate(),
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
  'frame.ping': 'ping',
  'frame.signal': 'signal',
  'frame.presence': 'presence',
  'frame.invalid': 'invalid',
} as const;

/** Forgets a session that ended: the node's map, and its user's count. */
function releaseSession(node: NodeContext, session: Session): void {
  node.sessions.delete(session.id);
  session.degradedToken = undefined;
  session.checkedToken = undefined;
  const user = session.countedUser;
  if (user === undefined) return;
  session.countedUser = undefined;
  const left = (node.userSessions.get(user) ?? 1) - 1;
  if (left > 0) node.userSessions.set(user, left);
  else node.userSessions.delete(user);
}

/** Starts the actor of a new socket and wires the socket's events to it. */
export function openSession(
  node: NodeContext,
  logic: ConnectionLogic,
  ws: WebSocket,
  token: string | undefined,
): Session {
  const session = new Session(ws, node);
  node.sessions.set(session.id, session);
  const input: ConnectionInput = { session: session.id, token, now: Date.now, limits: node.limits };
  const actor = createActor(logic, {
    input,
    inspect: node.observers?.inspector({ machine: 'connection', node: node.nodeId, session: session.id }, () =>
      session.actor?.getSnapshot().context.user,
    ),
  });
  session.actor = actor;

  let lastState = '';
  actor.subscribe({
    next: (snapshot) => {
      // The node's level: asking the session's logger would make one for every session.
      if (node.log.isLevelEnabled('debug')) {
        const state = JSON.stringify(snapshot.value);
        if (state !== lastState) session.log.debug({ state }, 'transition');
        lastState = state;
      }
      if (snapshot.status === 'done') {
        releaseSession(node, session);
        node.metrics.closed(snapshot.context.closeCode);
        session.log.info(
          { code: snapshot.context.closeCode, reason: snapshot.context.closeReason },
          'session closed',
        );
      }
    },
    // A bug in one connection closes that connection with 1011, never the process.
    error: (err) => {
      session.log.error({ err }, 'connection actor failed');
      node.interest.leaveAll(session);
      for (const room of session.presentIn) if (session.countedUser !== undefined) node.presence.remove(room, session.countedUser);
      session.presentIn.clear();
      releaseSession(node, session);
      if (ws.readyState === WebSocket.OPEN) ws.close(1011, 'internal error');
    },
  });

  ws.on('message', (data: RawData, isBinary: boolean) => {
    session.alive = true;
    if (isBinary) {
      node.metrics.frameIn('binary');
      actor.send({ type: 'frame.binary' });
      return;
    }
    const text = data.toString();
    const event = decodeClientFrame(text);
    // What the frame costs its recipients: counted against the session's send byte bucket.
    if (event.type === 'frame.send') event.bytes = Buffer.isBuffer(data) ? data.length : Buffer.byteLength(text);
    node.metrics.frameIn(frameTypeOf[event.type as keyof typeof frameTypeOf] ?? 'invalid');
    actor.send(event);
  });
  ws.on('pong', () => {
    session.alive = true;
  });
  ws.on('error', (err: Error & { code?: string }) => {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      node.metrics.frameIn('too_large');
      actor.send({ type: 'frame.tooLarge' });
    }
    else session.log.info({ code: err.code }, 'socket error');
  });
  ws.on('close', (code: number) => {
    // A machine that ended by itself (heartbeat lost, close grace over) has nothing more to hear.
    if (actor.getSnapshot().status === 'active') actor.send({ type: 'socket.closed', code });
  });

  actor.start();
  // XState keeps `input` for the actor's life; the machine has the token in its context now and
  // forgets it once checked, so the input must not hold it either.
  input.token = undefined;
  if (node.log.isLevelEnabled('debug')) session.log.debug('session opened');
  return session;
}
