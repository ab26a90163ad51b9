/**
 * Presence: which users have a session joined to a room anywhere in the fleet, and the `joined` /
 * `left` events when that changes. No central process: each node announces its own changes and
 * builds the fleet's view of the rooms its sessions joined (docs/presence.md has the design,
 * the measurements and the failure behaviour).
 *
 * - A node tells the others only when its *first* session of a user joins a room, or its *last*
 *   one leaves: a `join` or `leave` delta on the room's own subject (`!p` control line), so it
 *   reaches exactly the nodes that have sessions there, over the subscription they already hold.
 *   A user's second session on a node costs nothing on the bus.
 * - A node that gets its first session in a room asks every live node for its users there
 *   (`chatgate.v1.presence.query`, one reply per node) before it announces anything.
 * - Each node publishes a heartbeat every `heartbeatMs`; a node not heard for `nodeTimeoutMs` is
 *   dead and every user it held is dropped (a `left` where it was their last node). A node that
 *   stops says `bye`. After a NATS reconnect a node republishes its state and asks again.
 * - Each node emits `joined`/`left` to its own sessions from its own view: when the number of
 *   nodes holding a user in the room goes from 0 to 1, or from 1 to 0. So a user's second and
 *   third sessions, wherever they are, never cause an event.
 *
 * Nothing here is on the chat path: a chat message never touches this module.
 */
import { nuid, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { z } from 'zod';
import { isValidId, subjects } from '../subjects.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';
import { limitedLog } from '../bounded-log.ts';
import type { Logger } from '../log.ts';
import { defaults } from '../defaults.ts';

/** The first byte of a presence control line on a room subject (`!p\n{json}`): never a chat message's. */
export const CONTROL_MARK = 0x21;
const CONTROL_PREFIX = '!p\n';

export interface PresenceOptions {
  nc: NatsConnection;
  nodeId: string;
  log: Logger;
  /** Writes one encoded event frame to every local session joined to the room's subject. */
  broadcast(subject: string, frame: string, type: 'joined' | 'left'): void;
  /** How often this node says it is alive. @default 2000 */
  heartbeatMs?: number;
  /** A node not heard for this long is dead: its users leave. @default 10000 */
  nodeTimeoutMs?: number;
  /**
   * How often this node republishes its full state of every room it has sessions in, which
   * repairs whatever a lost delta or a late query answer left wrong elsewhere. @default 30000
   */
  stateIntervalMs?: number;
  /** How long a presence query waits for the nodes' answers. @default 1000 */
  queryTimeoutMs?: number;
  /** The most users a `presence` answer lists (`count` is exact). @default 1000 */
  maxUsers?: number;
}

interface RoomView {
  room: string;
  subject: string;
  /** This node's sessions per user. */
  local: Map<string, number>;
  /** Other nodes (instance ids) and their users here. */
  remote: Map<string, Set<string>>;
  /** Nodes (this one included) holding each user: the fleet's presence. */
  holders: Map<string, number>;
  /** Until the first answers from the other nodes are in, nothing is announced to sessions. */
  synced: boolean;
  /** Users whose first local session joined while not synced: decided once synced. */
  pendingLocal: Set<string>;
  ready: Promise<void>;
}

const nodeName = z.string().min(1).max(64).regex(/^[A-Za-z0-9]+$/);
const userId = z.string().refine(isValidId);
const control = z.discriminatedUnion('op', [
  z.strictObject({ op: z.enum(['join', 'leave']), node: nodeName, user: userId }),
  z.strictObject({ op: z.literal('state'), node: nodeName, users: z.array(userId) }),
]);
const heartbeat = z.strictObject({ node: nodeName, hello: z.literal(true).optional(), bye: z.literal(true).optional() });
const queryRequest = z.strictObject({ room: userId });
const queryReply = z.strictObject({ node: nodeName, users: z.array(userId) });

const PRESENCE_ANSWER = new RegExp(`^${subjects.presenceAnswers('').replaceAll('.', '\\.')}[A-Za-z0-9]{1,64}$`);

export interface PresenceAnswer {
  count: number;
  users: string[];
}

export class Presence {
  /** This process: a node restarted under the same name is another instance. */
  readonly instance = nuid.next();
  readonly #nc: NatsConnection;
  readonly #log: Logger;
  readonly #broadcast: PresenceOptions['broadcast'];
  readonly #heartbeatMs: number;
  readonly #nodeTimeoutMs: number;
  readonly #queryTimeoutMs: number;
  readonly #stateIntervalMs: number;
  readonly #maxUsers: number;
  readonly #views = new Map<string, RoomView>();
  /** Other live nodes: instance → when last heard (ms). */
  readonly #nodes = new Map<string, number>();
  readonly #guard: CallbackGuard;
  readonly #bad: ReturnType<typeof limitedLog>;
  #subs: Subscription[] = [];
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;

  constructor(options: PresenceOptions) {
    this.#nc = options.nc;
    this.#log = options.log;
    this.#broadcast = options.broadcast;
    this.#heartbeatMs = options.heartbeatMs ?? defaults.presenceHeartbeatMs;
    this.#nodeTimeoutMs = options.nodeTimeoutMs ?? defaults.presenceNodeTimeoutMs;
    this.#queryTimeoutMs = options.queryTimeoutMs ?? 1000;
    this.#stateIntervalMs = options.stateIntervalMs ?? 30_000;
    this.#maxUsers = options.maxUsers ?? defaults.presenceMaxUsers;
    this.#guard = new CallbackGuard(options.log);
    this.#bad = limitedLog(options.log);
  }

  /** Subscribes to heartbeats and queries, says hello, and starts the heartbeat and the sweep. */
  async start(): Promise<void> {
    this.#subs.push(
      this.#nc.subscribe(subjects.presenceNodes, { callback: this.#guard.callback('presence', (msg) => this.#onHeartbeat(msg)) }),
      this.#nc.subscribe(subjects.presenceQuery, { callback: this.#guard.callback('presence', (msg) => this.#onQuery(msg)) }),
    );
    await this.#nc.flush();
    this.#beat(true);
    const beat = setInterval(() => this.#beat(false), this.#heartbeatMs);
    const sweep = setInterval(() => this.#sweep(), Math.min(1000, this.#heartbeatMs));
    const state = setInterval(() => this.#publishStates(), this.#stateIntervalMs);
    beat.unref();
    sweep.unref();
    state.unref();
    this.#timers.push(beat, sweep, state);
  }

  /** Says bye (the others drop this node's users at once) and stops. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    if (!this.#nc.isClosed() && !this.#nc.isDraining()) {
      this.#nc.publish(subjects.presenceNodes, JSON.stringify({ node: this.instance, bye: true }));
    }
    for (const s of this.#subs) s.unsubscribe();
  }

  /** After a NATS reconnect: deltas may have been lost both ways, so state goes out and is asked for again. */
  resync(): void {
    this.#publishStates();
    for (const view of this.#views.values()) void this.#sync(view);
  }

  /** This node's users of every room it has sessions in, each room on its own subject. */
  #publishStates(): void {
    for (const view of this.#views.values()) {
      this.#publishControl(view, { op: 'state', node: this.instance, users: [...view.local.keys()] });
    }
  }

  /** Live nodes other than this one (heard within the timeout). */
  get liveNodes(): number {
    return this.#nodes.size;
  }

  /** What this node holds for one room: its own users, and each other node's (for benches and tests). */
  viewOf(room: string): { local: number; remote: Record<string, number>; synced: boolean } | undefined {
    const view = this.#views.get(subjects.room(room));
    if (!view) return undefined;
    const remote: Record<string, number> = {};
    for (const [node, users] of view.remote) remote[node] = users.size;
    return { local: view.local.size, remote, synced: view.synced };
  }

  /** Rooms this node has a view of. */
  get rooms(): number {
    return this.#views.size;
  }

  /** A local session of `user` is now joined to `room` (its subscription is in place). */
  add(room: string, user: string): void {
    const view = this.#viewOf(room);
    const sessions = (view.local.get(user) ?? 0) + 1;
    view.local.set(user, sessions);
    if (sessions > 1) return;
    this.#publishControl(view, { op: 'join', node: this.instance, user });
    if (!view.synced) view.pendingLocal.add(user);
    this.#hold(view, user, 1);
  }

  /** A local session of `user` left `room` (or closed). */
  remove(room: string, user: string): void {
    const view = this.#views.get(subjects.room(room));
    const sessions = view?.local.get(user);
    if (!view || sessions === undefined) return;
    if (sessions > 1) {
      view.local.set(user, sessions - 1);
      return;
    }
    view.local.delete(user);
    view.pendingLocal.delete(user);
    this.#publishControl(view, { op: 'leave', node: this.instance, user });
    this.#hold(view, user, -1);
    // No session here any more: the room's subscription goes, and this view with it.
    if (view.local.size === 0) this.#views.delete(view.subject);
  }

  /** The users in `room`, fleet-wide: from this node's view if it has one, else asked of every node. */
  async query(room: string): Promise<PresenceAnswer> {
    const view = this.#views.get(subjects.room(room));
    let users: string[];
    if (view) {
      await view.ready;
      users = [...view.holders.keys()];
    } else {
      const all = new Set<string>();
      await this.#ask(room, (reply) => {
        for (const u of reply.users) all.add(u);
      });
      users = [...all];
    }
    users.sort();
    return { count: users.length, users: users.length > this.#maxUsers ? users.slice(0, this.#maxUsers) : users };
  }

  /** A `!p` control line that arrived on a room subject. */
  onRoomControl(subject: string, data: Uint8Array): void {
    const view = this.#views.get(subject);
    if (!view) return;
    const parsed = this.#parse(control, Buffer.from(data.buffer, data.byteOffset, data.byteLength).subarray(CONTROL_PREFIX.length));
    if (!parsed || parsed.node === this.instance) return;
    this.#touch(parsed.node);
    if (parsed.op === 'state') this.#replace(view, parsed.node, parsed.users);
    else this.#apply(view, parsed.node, parsed.user, parsed.op === 'join');
  }

  #viewOf(room: string): RoomView {
    const subject = subjects.room(room);
    let view = this.#views.get(subject);
    if (view) return view;
    view = {
      room,
      subject,
      local: new Map(),
      remote: new Map(),
      holders: new Map(),
      synced: false,
      pendingLocal: new Set(),
      ready: Promise.resolve(),
    };
    this.#views.set(subject, view);
    view.ready = this.#sync(view);
    return view;
  }

  /** Asks every live node for its users in the view's room and takes the answers as their state. */
  async #sync(view: RoomView): Promise<void> {
    await this.#ask(view.room, (reply) => {
      if (this.#views.get(view.subject) !== view) return;
      this.#touch(reply.node);
      this.#replace(view, reply.node, reply.users);
    });
    if (this.#views.get(view.subject) !== view || view.synced) return;
    view.synced = true;
    // A user whose first session here joined meanwhile: new to the room only if no other node has it.
    for (const user of view.pendingLocal) {
      if (view.local.has(user) && view.holders.get(user) === 1) this.#emit(view, 'joined', user);
    }
    view.pendingLocal.clear();
  }

  /**
   * Asks every live node (one answer each; this one's is left out) and hands each answer to
   * `take` in a subscription callback, so in the order it arrived among that node's deltas: an
   * answer is never applied after a delta its node sent later. Ends when every node answered or
   * after the query timeout.
   */
  #ask(room: string, take: (reply: z.infer<typeof queryReply>) => void): Promise<void> {
    const expected = this.#nodes.size;
    if (expected === 0 || this.#nc.isClosed() || this.#nc.isDraining()) return Promise.resolve();
    return new Promise((resolve) => {
      let answered = 0;
      const inbox = subjects.presenceAnswers(nuid.next());
      const done = () => {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      };
      const timer = setTimeout(() => {
        // Repaired by the nodes' periodic state; worth a line, since it means a slow or lost node.
        this.#log.warn({ answered, expected }, 'presence query incomplete');
        done();
      }, this.#queryTimeoutMs);
      const sub = this.#nc.subscribe(inbox, {
        callback: (err, msg) => {
          if (err) return done();
          const reply = this.#parse(queryReply, msg.data);
          if (!reply || reply.node === this.instance) return;
          take(reply);
          answered += 1;
          if (answered >= expected) done();
        },
      });
      this.#nc.publish(subjects.presenceQuery, JSON.stringify({ room }), { reply: inbox });
    });
  }

  #onQuery(msg: Msg): void {
    const request = this.#parse(queryRequest, msg.data);
    // Answers go only to a presence answer subject: never into an inbox or anywhere else.
    if (!request || !msg.reply || !PRESENCE_ANSWER.test(msg.reply)) return;
    const view = this.#views.get(subjects.room(request.room));
    msg.respond(JSON.stringify({ node: this.instance, users: view ? [...view.local.keys()] : [] }));
  }

  #onHeartbeat(msg: Msg): void {
    const beat = this.#parse(heartbeat, msg.data);
    if (!beat || beat.node === this.instance) return;
    if (beat.bye) {
      this.#dead(beat.node);
      return;
    }
    this.#touch(beat.node);
    // A node that just started learns of this one at once, not a heartbeat later.
    if (beat.hello) this.#beat(false);
  }

  #beat(hello: boolean): void {
    if (this.#stopped || this.#nc.isClosed() || this.#nc.isDraining()) return;
    this.#nc.publish(subjects.presenceNodes, JSON.stringify(hello ? { node: this.instance, hello: true } : { node: this.instance }));
  }

  #touch(node: string): void {
    this.#nodes.set(node, Date.now());
  }

  #sweep(): void {
    const deadline = Date.now() - this.#nodeTimeoutMs;
    for (const [node, seen] of this.#nodes) if (seen < deadline) this.#dead(node);
  }

  /** A node stopped or went silent: every user it held leaves where it was their last node. */
  #dead(node: string): void {
    this.#nodes.delete(node);
    for (const view of this.#views.values()) this.#replace(view, node, []);
  }

  #apply(view: RoomView, node: string, user: string, joined: boolean): void {
    let users = view.remote.get(node);
    if (joined) {
      if (!users) view.remote.set(node, (users = new Set()));
      if (users.has(user)) return;
      users.add(user);
      this.#hold(view, user, 1);
    } else if (users?.delete(user)) {
      if (users.size === 0) view.remote.delete(node);
      this.#hold(view, user, -1);
    }
  }

  #replace(view: RoomView, node: string, users: readonly string[]): void {
    const next = new Set(users);
    const before = view.remote.get(node);
    if (before) for (const u of before) if (!next.has(u)) this.#apply(view, node, u, false);
    for (const u of next) this.#apply(view, node, u, true);
  }

  /** One node more or less holds `user`: the fleet's presence changes at 0 ↔ 1. */
  #hold(view: RoomView, user: string, delta: 1 | -1): void {
    const before = view.holders.get(user) ?? 0;
    const after = before + delta;
    if (after > 0) view.holders.set(user, after);
    else view.holders.delete(user);
    // Before the first answers, this node cannot tell a first session from a second one.
    if (!view.synced) return;
    if (before === 0 && after === 1) this.#emit(view, 'joined', user);
    else if (before === 1 && after === 0) this.#emit(view, 'left', user);
  }

  #emit(view: RoomView, type: 'joined' | 'left', user: string): void {
    this.#broadcast(view.subject, JSON.stringify({ type, room: view.room, user }), type);
  }

  #publishControl(view: RoomView, message: z.infer<typeof control>): void {
    if (this.#nc.isClosed() || this.#nc.isDraining()) return;
    this.#nc.publish(view.subject, CONTROL_PREFIX + JSON.stringify(message));
  }

  #parse<T>(schema: z.ZodType<T>, data: Uint8Array): T | undefined {
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    } catch {
      value = undefined;
    }
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    this.#bad('warn', { bytes: data.length }, 'malformed presence message dropped');
    return undefined;
  }
}
