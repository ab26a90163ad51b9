/**
 * The chatgate client: `connect(options)` returns a client that stays connected to one of the
 * gateway `urls`, re-joins its rooms, resumes every destination from its last position, and
 * re-sends what the node has not acknowledged. Its lifecycle is machines/client.machine.ts;
 * this module provides the machine's effects (socket, token function) and does the rest:
 * frames in (one table of handlers, `frameHandlers`), requests and their answers, rooms,
 * positions (positions.ts) and the outbox (outbox.ts).
 *
 * Runs in browsers and in Node ≥ 20: it uses the global `WebSocket` unless `options.WebSocket`
 * gives another with the same API (Node 20 has none: pass `ws`'s).
 */
import { createActor, type Actor } from 'xstate';
import {
  clientMachine,
  type ClientMachineOptions,
} from '../../machines/client.machine.ts';
import {
  SUBPROTOCOL,
  type AckFrame,
  type ClientFrame,
  type Destination,
  type ErrorFrame,
  type FrameId,
  type HistoryAnswerFrame,
  type MembershipFrame,
  type MessageFrame,
  type Position,
  type PresenceFrame,
  type ServerFrame,
  type SignalReceivedFrame,
  type WelcomeFrame,
} from '../protocol.ts';
import { ClientError, ClientErrorCode } from './errors.ts';
import { Outbox, defaultOutboxOptions, type OutboxOptions, type SendResult } from './outbox.ts';
import { Positions, destinationKey } from './positions.ts';
import { clientRecorder } from './recording.ts';

/** The part of the WebSocket API the client uses (browsers' and `ws`'s both have it). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

export interface ClientOptions extends Partial<ClientMachineOptions>, Partial<OutboxOptions> {
  /** Gateway WebSocket URLs (`ws://host:port/ws`), tried in turn. */
  urls: string | readonly string[];
  /** Returns a token (a JWT) for this user: called at connect when none is usable, after 4001/4002, and on `expiring`. */
  token: () => Promise<string>;
  /** The WebSocket class. @default globalThis.WebSocket */
  WebSocket?: WebSocketConstructor;
  /** How long a `join`, `leave`, `history`, `presence` or `signal` may wait for its answer while open. @default 10000 */
  requestTimeoutMs?: number;
  /** Receives the machine's recording, one JSON line at a time (replay with `chatgate replay`). @default off */
  record?: (line: string) => void;
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StateChange {
  state: ClientState;
  /** `open`: the session and node. */
  session?: string;
  node?: string;
  /** `reconnecting`: the close that caused it and the wait before the next attempt. */
  code?: number;
  reason?: string;
  delayMs?: number;
  /** `closed`: why, unless `close()` was called. */
  failure?: { code: number; reason: string };
}

/** A destination that could not be resumed: reload its history. */
export interface Gap {
  room?: string;
  /** The user's own inbox. */
  inbox?: true;
}

/** A user's first session joined a room this client is in, or its last one left (`joined`, `left`). */
export interface Membership {
  room: string;
  user: string;
}

/** A signal received: never stored, never replayed. */
export interface Signal {
  from: string;
  to: Destination;
  body: unknown;
}

/** Who is in a room, fleet-wide: `users` sorted and capped (`PRESENCE_MAX_USERS`), `count` exact. */
export interface Presence {
  room: string;
  count: number;
  users: string[];
}

export interface ClientEvents {
  message: MessageFrame;
  joined: Membership;
  left: Membership;
  signal: Signal;
  state: StateChange;
  /** Open, and every room re-joined (resumed from its position): the outbox is sending again. */
  resumed: { session: string };
  gap: Gap;
  error: ClientError;
}

export type HistoryTarget = { room: string } | { user: true };

export interface HistoryPage {
  messages: MessageFrame[];
  more: boolean;
}

type Answer = AckFrame | HistoryAnswerFrame | PresenceFrame;

interface Pending {
  resolve(frame: Answer): void;
  reject(error: ClientError): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const OPEN = 1;
/** Pauses before a `join` answered `unavailable` is asked again in the same session; then the socket is dropped. */
const JOIN_RETRY_MS = [250, 500, 1000, 2000];
/** Own room sends remembered, to drop their replay after a resume. */
const OWN_SENDS_KEPT = 2048;

/** A random id of 16 characters [0-9a-z] from the platform's crypto (browsers and Node ≥ 19). */
function randomId(): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => (b % 36).toString(36)).join('') + Date.now().toString(36).slice(-4);
}

const errorOf = (frame: ErrorFrame) => new ClientError(frame.code, frame.message, frame.retryAfterMs);

export class ChatClient {
  readonly id = randomId();
  readonly #options: ClientOptions;
  readonly #actor: Actor<typeof clientMachine>;
  readonly #listeners: { [K in keyof ClientEvents]: Set<(value: ClientEvents[K]) => void> } = {
    message: new Set(),
    joined: new Set(),
    left: new Set(),
    signal: new Set(),
    state: new Set(),
    resumed: new Set(),
    gap: new Set(),
    error: new Set(),
  };
  readonly #positions = new Positions();
  readonly #outbox: Outbox;
  /** Rooms the application joined; re-joined after every reconnect. */
  readonly #rooms = new Set<string>();
  readonly #pending = new Map<FrameId, Pending>();
  #socket: WebSocketLike | undefined;
  #nextId = 1;
  #keys = 0;
  #state: ClientState = 'connecting';
  #user: string | undefined;
  #session: string | undefined;
  /** Whether the rooms are re-joined since the last welcome: only then does the outbox send. */
  #resumed = false;
  /** Sent `since` for the inbox in this connection's `auth`. */
  #inboxSince: Position | undefined;
  /**
   * The msgIds of this client's recent room sends: a resume may replay them from the room, and a
   * room message never comes back to the session that sent it (docs/protocol.md), so neither
   * does it here, across reconnects.
   */
  readonly #ownRoomSends = new Set<string>();

  constructor(options: ClientOptions) {
    const urls = typeof options.urls === 'string' ? [options.urls] : [...options.urls];
    if (urls.length === 0) throw new TypeError('connect: give at least one URL');
    this.#options = options;
    this.#outbox = new Outbox(
      {
        maxOutbox: options.maxOutbox ?? defaultOutboxOptions.maxOutbox,
        maxInFlight: options.maxInFlight ?? defaultOutboxOptions.maxInFlight,
        sendTimeoutMs: options.sendTimeoutMs ?? defaultOutboxOptions.sendTimeoutMs,
      },
      () => `${this.id}-${(this.#keys++).toString(36)}`,
      (frame) => this.#write(frame),
    );
    const machineOptions: Partial<ClientMachineOptions> = {};
    if (options.minDelayMs !== undefined) machineOptions.minDelayMs = options.minDelayMs;
    if (options.maxDelayMs !== undefined) machineOptions.maxDelayMs = options.maxDelayMs;
    if (options.connectTimeoutMs !== undefined) machineOptions.connectTimeoutMs = options.connectTimeoutMs;
    const logic = clientMachine.provide({
      actions: {
        fetchToken: (_, params) => this.#fetchToken(params.reason),
        openSocket: (_, params) => this.#open(params.url),
        sendAuth: (_, params) => {
          this.#inboxSince = this.#positions.last('inbox');
          this.#writeFrame({ type: 'auth', token: params.token, ...(this.#inboxSince === undefined ? {} : { since: this.#inboxSince }) });
        },
        sendRefresh: (_, params) => void this.#request({ type: 'refresh', token: params.token }).then(
          (ack) => this.#actor.send({ type: 'refresh.ok', exp: (ack as AckFrame).exp ?? 0 }),
          (err: ClientError) => this.#emit('error', err),
        ),
        closeSocket: (_, params) => this.#drop(params.code, params.reason),
        announceOpen: (_, params) => {
          this.#session = params.session;
          this.#setState({ state: 'open', session: params.session, node: params.node });
          void this.#resume();
        },
        announceReconnect: (_, params) => {
          this.#lost();
          this.#setState({ state: 'reconnecting', code: params.code, reason: params.reason, delayMs: params.delayMs });
        },
        announceClosed: (_, params) => {
          this.#lost();
          this.#drop(1000, 'client closed');
          const error = new ClientError(ClientErrorCode.closed, params.failure ? `closed by the node with ${params.failure.code}` : 'client closed');
          this.#outbox.fail(error);
          for (const [id, pending] of this.#pending) {
            this.#pending.delete(id);
            clearTimeout(pending.timer);
            pending.reject(error);
          }
          this.#setState({ state: 'closed', ...(params.failure ? { failure: params.failure } : {}) });
        },
      },
    });
    const input = { urls, now: () => Date.now(), random: () => Math.random(), options: machineOptions };
    this.#actor = createActor(logic, {
      input,
      ...(options.record ? { inspect: clientRecorder({ id: this.id, input: { urls, options: machineOptions } }, options.record) } : {}),
    });
    this.#actor.subscribe({ error: (err) => this.#emit('error', new ClientError(ClientErrorCode.closed, `client machine failed: ${String(err)}`)) });
  }

  /** Starts connecting (done by `connect`). */
  start(): this {
    this.#actor.start();
    return this;
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The user, once a `welcome` has said it. */
  get user(): string | undefined {
    return this.#user;
  }

  /** The current session's id, while open. */
  get session(): string | undefined {
    return this.#session;
  }

  /** The machine's actor, for an inspector (read only). */
  get actor(): Actor<typeof clientMachine> {
    return this.#actor;
  }

  /** Unacknowledged sends. */
  get pendingSends(): number {
    return this.#outbox.size;
  }

  get rooms(): ReadonlySet<string> {
    return this.#rooms;
  }

  on<K extends keyof ClientEvents>(event: K, listener: (value: ClientEvents[K]) => void): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  /**
   * Sends `body` to a user or a room (joined first). Resolves with the node's ack once the
   * message is stored (durable) or published; re-sent with the same key across reconnects; fails
   * with `send_timeout` after `sendTimeoutMs`, `outbox_full`, `closed`, or the node's refusal.
   */
  send(to: Destination, body: unknown): Promise<SendResult> {
    if (this.#state === 'closed') return Promise.reject(new ClientError(ClientErrorCode.closed, 'client closed'));
    return this.#outbox.send(to, body);
  }

  /** Joins a room, now and after every reconnect. Resolves with the ack; `recovered` with durable delivery. */
  async join(room: string): Promise<{ recovered?: boolean }> {
    this.#rooms.add(room);
    if (this.#state !== 'open') return {};
    return this.#joinSure(room);
  }

  /** Leaves a room and forgets its position. */
  async leave(room: string): Promise<void> {
    this.#rooms.delete(room);
    this.#positions.forget(destinationKey({ room }));
    if (this.#state === 'open') await this.#request({ type: 'leave', room });
  }

  /** A page of stored messages of a room or the inbox, oldest first (durable delivery). */
  async history(target: HistoryTarget, page: { before?: Position; limit?: number } = {}): Promise<HistoryPage> {
    const answer = (await this.#request({ type: 'history', ...target, ...page })) as HistoryAnswerFrame;
    return { messages: answer.messages, more: answer.more };
  }

  /** Who is in a room now, on every node (the token must grant it; joining is not needed). */
  async presence(room: string): Promise<Presence> {
    const answer = (await this.#request({ type: 'presence', room })) as PresenceFrame;
    return { room: answer.room, count: answer.count, users: answer.users };
  }

  /**
   * Sends a signal (typing, cursor, "seen": body ≤ 1024 bytes as JSON) to a user or a joined room.
   * Resolves on the node's ack; rejects with its refusal (`rate_limited`, `forbidden`, …), or
   * `unavailable` when not connected: signals are never queued or re-sent.
   */
  async signal(to: Destination, body: unknown): Promise<void> {
    await this.#request({ type: 'signal', to, body });
  }

  /** Closes the client for good: pending sends fail with `closed`. */
  close(): void {
    // Idempotent: a client that has stopped already (closed for good) has nothing left to close.
    if (this.#actor.getSnapshot().status === 'active') this.#actor.send({ type: 'client.close' });
  }

  // ---- frames in: one handler per frame type (extend here) ----

  // `ServerFrame & { type: T }` rather than `Extract`: one frame interface covers `joined` and `left`.
  readonly frameHandlers: { [T in ServerFrame['type']]?: (frame: ServerFrame & { type: T }) => void } = {
    welcome: (frame: WelcomeFrame) => {
      this.#user = frame.user;
      this.#startAt('inbox', this.#inboxSince !== undefined ? frame.recovered : undefined, frame.pos);
      if (this.#inboxSince !== undefined && frame.recovered === false) this.#emit('gap', { inbox: true });
      this.#actor.send({ type: 'frame.welcome', session: frame.session, node: frame.node, exp: frame.exp });
    },
    message: (frame: MessageFrame) => {
      if (!this.#positions.accept(frame)) return;
      if ('room' in frame.to && this.#ownRoomSends.has(frame.msgId)) return;
      this.#emit('message', frame);
    },
    ack: (frame: AckFrame) => {
      if (this.#outbox.owns(frame.id)) {
        const room = this.#outbox.roomOf(frame.id);
        if (room !== undefined && frame.pos !== undefined) this.#positions.seed(destinationKey({ room }), frame.pos);
        if (frame.msgId !== undefined && room !== undefined) {
          this.#ownRoomSends.add(frame.msgId);
          if (this.#ownRoomSends.size > OWN_SENDS_KEPT) this.#ownRoomSends.delete(this.#ownRoomSends.values().next().value!);
        }
        this.#outbox.acked(frame.id, { msgId: frame.msgId!, ...(frame.pos === undefined ? {} : { pos: frame.pos }) });
        return;
      }
      this.#settle(frame.id, (p) => p.resolve(frame));
    },
    history: (frame: HistoryAnswerFrame) => this.#settle(frame.id, (p) => p.resolve(frame)),
    presence: (frame: PresenceFrame) => this.#settle(frame.id, (p) => p.resolve(frame)),
    joined: (frame: MembershipFrame) => this.#emit('joined', { room: frame.room, user: frame.user }),
    left: (frame: MembershipFrame) => this.#emit('left', { room: frame.room, user: frame.user }),
    signal: (frame: SignalReceivedFrame) => this.#emit('signal', { from: frame.from, to: frame.to, body: frame.body }),
    error: (frame: ErrorFrame) => {
      const error = errorOf(frame);
      if (frame.id !== undefined && this.#outbox.owns(frame.id)) return this.#outbox.refused(frame.id, error);
      if (frame.id !== undefined && this.#pending.has(frame.id)) return this.#settle(frame.id, (p) => p.reject(error));
      this.#emit('error', error);
    },
    expiring: (frame) => this.#actor.send({ type: 'frame.expiring', exp: frame.exp }),
    pong: () => {},
  };

  #receive(data: unknown): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(String(data)) as ServerFrame;
    } catch {
      // The node only writes JSON: anything else is reported, not acted on.
      this.#emit('error', new ClientError('bad_request', 'the node sent a frame that is not JSON'));
      return;
    }
    const handler = this.frameHandlers[frame.type] as ((f: ServerFrame) => void) | undefined;
    handler?.(frame);
  }

  // ---- effects the machine asks for ----

  #fetchToken(reason: 'connect' | 'refresh'): void {
    this.#options.token().then(
      (token) => this.#actor.send({ type: 'token.ok', token }),
      (err: unknown) => {
        this.#emit('error', new ClientError('unauthorized', `the token function failed (${reason}): ${String(err)}`));
        this.#actor.send({ type: 'token.failed', reason: String(err).slice(0, 200) });
      },
    );
  }

  #open(url: string): void {
    const Ctor = this.#options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) throw new TypeError('no WebSocket: pass options.WebSocket (for example `ws` in Node 20)');
    let socket: WebSocketLike;
    try {
      socket = new Ctor(url, [SUBPROTOCOL]);
    } catch (err) {
      // A malformed URL: as good as a socket that could not connect.
      queueMicrotask(() => this.#actor.send({ type: 'socket.closed', code: 1006, reason: String(err).slice(0, 200) }));
      return;
    }
    this.#socket = socket;
    socket.onopen = () => {
      if (this.#socket === socket) this.#actor.send({ type: 'socket.opened' });
    };
    socket.onmessage = (ev) => {
      if (this.#socket === socket) this.#receive(ev.data);
    };
    socket.onerror = () => {
      // Always followed by a close, which is what counts.
    };
    socket.onclose = (ev) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#actor.send({ type: 'socket.closed', code: ev.code, reason: ev.reason });
    };
  }

  /** Closes and forgets the current socket: nothing it does later counts. */
  #drop(code: number, reason: string): void {
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket) return;
    try {
      socket.close(code, reason);
    } catch {
      // Closing a socket that is still connecting throws in some implementations: it is gone either way.
    }
  }

  /** The socket is gone: requests in flight fail, sends wait for the next session. */
  #lost(): void {
    this.#resumed = false;
    this.#session = undefined;
    this.#outbox.suspend();
    const error = new ClientError('unavailable', 'the connection was lost before the answer');
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(error);
    }
  }

  /**
   * Where a destination starts after a `welcome` or a join's `ack`: `pos` is its newest position
   * then (live messages come after it). Taken when the client knows none yet, so that a later
   * resume starts there; and after `recovered: false`, whose old position will never resume again
   * (the application reloads with `history`). Never moves a known position otherwise.
   */
  #startAt(key: string, recovered: boolean | undefined, pos: Position | undefined): void {
    if (pos === undefined) return;
    if (recovered === false) this.#positions.reset(key, pos);
    else this.#positions.seed(key, pos);
  }

  /** Where the client stands in a destination: the position a resume would start from. */
  position(to: Destination): Position | undefined {
    return this.#positions.last(destinationKey(to));
  }

  /** After `welcome`: re-join every room from its position, then let the outbox send. */
  async #resume(): Promise<void> {
    const session = this.#session;
    await Promise.all(
      [...this.#rooms].map((room) =>
        this.#joinSure(room).catch(() => {
          // Reported, and the room left or the socket dropped, by #joinSure.
        }),
      ),
    );
    if (session === undefined || this.#session !== session || this.#state !== 'open') return;
    this.#resumed = true;
    this.#emit('resumed', { session });
    this.#outbox.ready();
  }

  async #joinNow(room: string): Promise<{ recovered?: boolean }> {
    const key = destinationKey({ room });
    const since = this.#positions.last(key);
    const ack = (await this.#request({ type: 'join', room, ...(since === undefined ? {} : { since }) })) as AckFrame;
    this.#startAt(key, since !== undefined ? ack.recovered : undefined, ack.pos);
    if (since !== undefined && ack.recovered === false) this.#emit('gap', { room });
    return ack.recovered === undefined ? {} : { recovered: ack.recovered };
  }

  /**
   * Joins `room` (resuming it) in this session, or gives the session up: a node that answers
   * `unavailable` has undone the join (NATS or the stream could not be read, as while a stream
   * elects a leader), so it is asked again after a pause (JOIN_RETRY_MS); a join still failing
   * then, or never answered (the node may or may not have joined: unknown), drops the socket, and
   * the reconnect resumes every destination from its position. A client never stays in a session
   * that is not in one of its rooms. A room the token does not grant is left (and reported).
   */
  async #joinSure(room: string): Promise<{ recovered?: boolean }> {
    const session = this.#session;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#joinNow(room);
      } catch (err) {
        const error = err as ClientError;
        if (this.#session !== session || this.#state !== 'open') throw error;
        if (error.code === 'forbidden') {
          this.#rooms.delete(room);
          this.#emit('error', error);
          throw error;
        }
        const pause = JOIN_RETRY_MS[attempt];
        if (error.code === 'unavailable' && pause !== undefined) {
          await new Promise((r) => setTimeout(r, pause));
          if (this.#session !== session || this.#state !== 'open') throw error;
          continue;
        }
        if (this.#rooms.has(room)) this.#socket?.close(4000, 'join failed');
        throw error;
      }
    }
  }

  #request(frame: Record<string, unknown> & { type: 'join' | 'leave' | 'refresh' | 'history' | 'presence' | 'signal' }): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const id = this.#write(frame);
      if (id === undefined) return reject(new ClientError('unavailable', 'not connected'));
      const timeoutMs = this.#options.requestTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ClientError(ClientErrorCode.requestTimeout, `${frame.type} not answered within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
  }

  #settle(id: FrameId, settle: (pending: Pending) => void): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    settle(pending);
  }

  /** Writes a frame with a fresh id on the open socket; undefined when there is none. */
  #write(frame: Record<string, unknown>): FrameId | undefined {
    const id = this.#nextId++;
    return this.#writeFrame({ ...frame, id } as ClientFrame) ? id : undefined;
  }

  #writeFrame(frame: ClientFrame): boolean {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  #setState(change: StateChange): void {
    this.#state = change.state;
    this.#emit('state', change);
  }

  #emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const listener of this.#listeners[event]) {
      // An application listener that throws must not stop the client or the other listeners.
      try {
        listener(value);
      } catch (err) {
        if (event !== 'error') this.#emit('error', new ClientError('internal', `a ${event} listener threw: ${String(err)}`));
      }
    }
  }

  /** Whether the outbox may send (open, rooms re-joined). */
  get resumed(): boolean {
    return this.#resumed;
  }
}

/** Connects to a chatgate gateway; see `ClientOptions`. */
export function connect(options: ClientOptions): ChatClient {
  return new ChatClient(options).start();
}
