/**
 * Model-based tests: every path that `@xstate/graph` generates through the real connection
 * machine (see ./connection.model.ts) is played against a real gateway over a real WebSocket,
 * with a real nats-server and the real auth service.
 *
 * Two oracles. Error codes and close codes come from the contract, not from the machine:
 * `documented` says, for each event in each state, which error (with the frame's id) and which
 * close code docs/protocol.md promises, and a test checks each of those codes is in the doc's
 * tables with that meaning; so a wrong code in the machine fails here. The other frames (pong,
 * ack, welcome, message, expiring) come from replaying each step through the machine's pure
 * `transition`, with the frame ids the test really sends; the test waits (bounded) for each on
 * the socket. After each step the state reached is checked through probes, events that the
 * machine answers without leaving the state (a `ping`, an `auth` after the token, a `join` before
 * it, …), and at the end no frame may have come that the machine did not announce.
 *
 * The one thing a test holds is the timing of the token check: each gateway gets the real auth
 * check (`gateway.auth.verify`, over NATS) wrapped in a latch that keeps the verdict until the
 * path's `token …` / `refresh …` step, so "while the token is being checked" is a state a client
 * can really be in, not a race. The verdict itself is the auth service's, and the test checks it
 * is the outcome the path asked for.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import {
  connectionMachine,
  type ConnectionEvent,
  type VerifyResult,
} from '../../machines/connection.machine.ts';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/gateway/gateway.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { subjects } from '../../src/subjects.ts';
import type { TokenVerifier } from '../../src/auth/tokens.ts';
import { TestClient, type Frame } from '../harness/client.ts';
import { startStack, type Stack } from '../harness/stack.ts';
import {
  abstractState,
  ev,
  internalEvent,
  isShortLived,
  modelInput,
  modelPaths,
  OTHER_USER,
  ROOM,
  USER,
  variantOf,
  type DoneEvent,
  type ModelEvent,
  type ModelPath,
  type ModelSnapshot,
  type VerifyVariant,
} from './connection.model.ts';
import { until } from '../harness/sync.ts';

/** Bound on every wait for a frame or a close. */
const WAIT_MS = 5000;
/** A short-lived token: its `expiring` comes at once (EXPIRY_WARNING_MS below), its `exp` in 2–3 s. */
const SHORT_TTL_S = 3;
const EXPIRY_WARNING_MS = 60_000;
/** The machine's fixed close grace is 5 s; the node cuts the TCP connection then. */
const CLOSE_GRACE_WAIT_MS = 9000;

const timerEvents = new Set<string>([
  internalEvent.authTimeout,
  internalEvent.untilExpiring,
  internalEvent.untilExpiry,
  internalEvent.closeGrace,
]);

// ---------------------------------------------------------------------------------------------
// The latch around the real token check

/** Keeps each verdict of the real token check until the path releases it. */
class VerdictLatch {
  readonly #held: Array<{ verdict: Promise<VerifyResult>; release: () => void }> = [];
  readonly #all: Array<Promise<VerifyResult>> = [];
  #waiters: Array<() => void> = [];

  around(verify: () => TokenVerifier): TokenVerifier {
    return (token) => {
      const verdict = verify()(token);
      // A rejection is passed on when the verdict is released; until then it is not unhandled.
      verdict.catch(() => {});
      this.#all.push(verdict);
      return new Promise<VerifyResult>((resolve, reject) => {
        this.#held.push({ verdict, release: () => void verdict.then(resolve, reject) });
        for (const wake of this.#waiters.splice(0)) wake();
      });
    };
  }

  /** Waits (bounded) until the node has asked for a token check that is not released yet. */
  async asked(timeoutMs = WAIT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#held.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('the node did not ask for a token check');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Lets the oldest held verdict through to the node and returns it. */
  async release(): Promise<VerifyResult> {
    await this.asked();
    const held = this.#held.shift()!;
    held.release();
    return held.verdict;
  }

  /** Lets every held verdict through and waits until every check the node started is over. */
  async drain(): Promise<void> {
    for (const held of this.#held.splice(0)) held.release();
    await Promise.allSettled(this.#all);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared processes, and what each path starts for itself

/** nats-server with the auth service: the stack most paths run on. */
let authed: Stack;
/** nats-server without any auth service: a token check there is `unavailable`. */
let noAuth: Stack;

beforeAll(async () => {
  [authed, noAuth] = await Promise.all([startStack({ nodes: 0 }), startStack({ nodes: 0, auth: false })]);
});
afterAll(async () => {
  await Promise.all([authed?.stop(), noAuth?.stop()]);
});

/** Stopped after each path, last started first, also when the path failed. */
const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface World {
  stack: Stack;
  gateway: Gateway;
  latch: VerdictLatch;
  client: TestClient;
  /** Frames already matched to an effect of the machine. */
  consumed: Set<Frame>;
  /** The jti of the token the session was admitted with. */
  jti: string | undefined;
  shutdown: Promise<void> | undefined;
  /** The close code docs/protocol.md promises for the close under way. */
  closeCode?: number;
}

const hasEvent = (path: ModelPath, match: (e: ModelEvent) => boolean) => path.events.some(match);
const isVerdict = (e: ModelEvent, type: string, variant: VerifyVariant) =>
  e.type === type && variantOf((e as DoneEvent).output!) === variant;

/** Starts what the path needs: a gateway of its own, on the right NATS, and one client. */
async function startWorld(path: ModelPath): Promise<World> {
  // A refresh that cannot be checked needs an auth service that goes away during the path.
  const ownStack = hasEvent(path, (e) => isVerdict(e, internalEvent.refreshVerified, 'unavailable'));
  const stack = ownStack
    ? await startStack({ nodes: 0 })
    : hasEvent(path, (e) => isVerdict(e, internalEvent.verified, 'unavailable'))
      ? noAuth
      : authed;
  if (ownStack) cleanups.push(() => stack.stop());

  const latch = new VerdictLatch();
  let gateway: Gateway | undefined;
  const options: GatewayOptions = {
    natsUrl: stack.nats[0]!.url,
    port: 0,
    host: '127.0.0.1',
    nodeId: `model-${randomUUID().slice(0, 8)}`,
    handshakesPerIpPerSecond: 1_000_000,
    // The auth timer fires in the one path that waits for it; no other path may meet it.
    authTimeoutMs: hasEvent(path, (e) => e.type === internalEvent.authTimeout) ? 200 : 60_000,
    limits: { expiryWarningMs: EXPIRY_WARNING_MS },
    // The session closes at `exp` itself, as the machine's expiry timer says: no clock tolerance
    // (CLOCK_TOLERANCE_S, issue 9) on top, which would move the close past the bounded wait.
    clockToleranceS: 0,
    // No path has a degraded session: a check that cannot reach the auth service is `unavailable`.
    degradedPolicy: 'reject',
    verify: latch.around(() => gateway!.auth.verify),
  };
  if (hasEvent(path, (e) => e.type === 'heartbeat.lost')) options.heartbeatIntervalMs = 250;
  gateway = await startGateway(options);
  // Checks still in flight end before the node stops (its breaker is stopped with it).
  cleanups.push(async () => {
    await latch.drain();
    await gateway!.close();
  });

  const client = new TestClient(gateway.url, { via: 'none' });
  cleanups.push(() => client.close());
  await client.opened;
  return { stack, gateway, latch, client, consumed: new Set(), jti: undefined, shutdown: undefined };
}

// ---------------------------------------------------------------------------------------------
// From the machine's effects to the frames the contract promises

interface Expected {
  what: string;
  test: (f: Frame) => boolean;
}

const frame = (expected: Frame): Expected => ({
  what: JSON.stringify(expected),
  test: (f) => isDeepStrictEqual(f, expected),
});

function expectedFrames(
  actions: ReadonlyArray<{ type: string; params?: unknown }>,
  next: ModelSnapshot,
  world: World,
): Expected[] {
  const out: Expected[] = [];
  for (const action of actions) {
    const p = (action.params ?? {}) as Record<string, any>;
    switch (action.type) {
      case 'sendPong':
        out.push(frame(p.id === undefined ? { type: 'pong' } : { type: 'pong', id: p.id }));
        break;
      case 'sendError':
        // Which code, and whether an error comes at all, is the contract's (`documented` below),
        // not the machine's: an error frame the contract does not promise stays unconsumed.
        break;
      case 'sendAck':
        out.push(frame({ type: 'ack', id: p.id }));
        break;
      case 'subscribeRoomAndAck':
        // With durable delivery the ack carries the room's newest position (`pos`) once it has one.
        out.push({
          what: JSON.stringify({ type: 'ack', id: p.id, pos: '…?' }),
          test: (f) => f.type === 'ack' && f.id === p.id && Object.keys(f).every((k) => ['type', 'id', 'pos'].includes(k)),
        });
        // The model's user is alone in the room: its first session there is told of its own join.
        out.push(frame({ type: 'joined', room: p.room, user: USER }));
        break;
      case 'publishAndAck':
        out.push({
          // Durable delivery (the default): the stored message's position too.
          what: `ack ${p.id} with a msgId and a pos`,
          test: (f) =>
            f.type === 'ack' && f.id === p.id && typeof f.msgId === 'string' && typeof f.pos === 'string' && Object.keys(f).length === 4,
        });
        // To a user: every session of that user, the sender's own included.
        if ('user' in p.to && p.to.user === USER) {
          out.push({
            what: `message from ${USER} to ${JSON.stringify(p.to)}`,
            test: (f) =>
              f.type === 'message' && f.from === USER && isDeepStrictEqual(f.to, p.to) && isDeepStrictEqual(f.body, p.body),
          });
        }
        break;
      case 'sendWelcome':
        out.push({
          what: `welcome for ${next.context.user}`,
          test: (f) =>
            f.type === 'welcome' &&
            f.user === next.context.user &&
            f.node === world.gateway.nodeId &&
            typeof f.session === 'string' &&
            typeof f.exp === 'number' &&
            f.degraded === next.context.degraded,
        });
        break;
      case 'sendExpiring':
        out.push({ what: 'expiring', test: (f) => f.type === 'expiring' && typeof f.exp === 'number' });
        break;
      case 'sendRefreshAck':
        out.push({
          what: `ack ${p.id} with the new exp`,
          test: (f) => f.type === 'ack' && f.id === p.id && typeof f.exp === 'number' && f.exp > Date.now() / 1000,
        });
        break;
      default:
        // Everything else is internal: context, NATS interest, timers, child actors, the close
        // (checked from the state the step reaches).
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The oracle: what docs/protocol.md promises for an event, independent of the machine

/** The close codes the model's events lead to, with the meaning docs/protocol.md gives each. */
const documentedClose = {
  normal: { code: 1000, meaning: 'normal closure' },
  goingAway: { code: 1001, meaning: 'node going away' },
  binary: { code: 1003, meaning: 'binary frame' },
  lost: { code: 1006, meaning: 'connection lost' },
  tooBig: { code: 1009, meaning: 'frame too large' },
  tryAgainLater: { code: 1013, meaning: 'try again later' },
  invalidToken: { code: 4001, meaning: 'invalid token' },
  tokenExpired: { code: 4002, meaning: 'token expired' },
  authTimeout: { code: 4008, meaning: 'auth timeout' },
} as const;
/** The error codes of docs/protocol.md's error table that the model's events lead to. */
const documentedErrors = ['bad_request', 'unauthorized', 'forbidden', 'unavailable'] as const;
type DocumentedError = (typeof documentedErrors)[number];

/**
 * What the contract promises when `event` happens in state `prev`: the error frame (with the
 * frame's id) and the close code, read from the tables of docs/protocol.md ("Error codes",
 * "Close codes") and written here by hand, so a wrong code in the machine fails the path.
 */
function documented(event: ModelEvent, prev: ModelSnapshot): { error?: DocumentedError; close?: number } {
  if (!isOpen(prev)) return {};
  const awaiting = prev.matches({ open: 'awaitingAuth' });
  const checking = prev.matches({ open: 'authenticating' });
  const active = prev.matches({ open: 'active' });
  const e = event as ModelEvent & Record<string, any>;
  switch (event.type) {
    case 'frame.auth':
      // `auth` after a token was already presented.
      return awaiting ? {} : { error: 'bad_request' };
    case 'frame.join':
    case 'frame.leave':
    case 'frame.send':
      if (awaiting) return { error: 'unauthorized' };
      if (checking) return {}; // held until the verdict
      // The model's tokens grant ROOM only; `send` to a room needs it joined.
      if (event.type === 'frame.send' && 'room' in e.to) {
        return prev.context.joined.includes(e.to.room) ? {} : { error: 'forbidden' };
      }
      if (event.type !== 'frame.send' && e.room !== ROOM) return { error: 'forbidden' };
      return {};
    case 'frame.refresh':
      if (awaiting) return { error: 'unauthorized' };
      return prev.matches({ open: { active: { refresh: 'verifying' } } }) ? { error: 'bad_request' } : {};
    case 'frame.invalid':
      return { error: 'bad_request' };
    case 'frame.binary':
      return { close: documentedClose.binary.code };
    case 'frame.tooLarge':
      return { close: documentedClose.tooBig.code };
    case 'socket.closed':
      return { close: e.code };
    case 'node.shutdown':
      return { close: documentedClose.goingAway.code };
    case 'session.revoked':
      return active ? { close: documentedClose.invalidToken.code } : {};
    case 'heartbeat.lost':
      return { close: documentedClose.lost.code };
    case internalEvent.authTimeout:
      return { close: documentedClose.authTimeout.code };
    case internalEvent.untilExpiry:
      return { close: documentedClose.tokenExpired.code };
    case internalEvent.verified: {
      // Every gateway of the model has DEGRADED_POLICY=reject: no token check, no session.
      const outcome = (event as DoneEvent).output!.outcome;
      if (outcome === 'invalid') return { close: documentedClose.invalidToken.code };
      if (outcome === 'expired') return { close: documentedClose.tokenExpired.code };
      if (outcome === 'unavailable') return { close: documentedClose.tryAgainLater.code };
      return {};
    }
    case internalEvent.refreshVerified: {
      const result = (event as DoneEvent).output!;
      if (result.outcome === 'invalid' || result.outcome === 'expired') return { error: 'unauthorized' };
      if (result.outcome === 'unavailable') return { error: 'unavailable' };
      if (result.outcome === 'ok' && result.claims.sub !== prev.context.user) return { error: 'forbidden' };
      return {};
    }
    default:
      return {};
  }
}

/** The id of the frame a documented error answers: the event's own, or the refresh being checked. */
function errorIdFor(event: ModelEvent, prev: ModelSnapshot): string | number | undefined {
  if ('id' in event) return (event as { id: string }).id;
  if (event.type === internalEvent.refreshVerified) return prev.context.refreshId;
  return undefined;
}

async function take(world: World, expected: Expected): Promise<void> {
  const found = await world.client.next((f) => !world.consumed.has(f) && expected.test(f), WAIT_MS).catch((err: Error) => {
    throw new Error(`expected ${expected.what}: ${err.message}`);
  });
  world.consumed.add(found);
}

// ---------------------------------------------------------------------------------------------
// From the model's events to what a client (or the operator) does

async function tokenFor(stack: Stack, variant: VerifyVariant, jti: string): Promise<string> {
  const rooms = [ROOM];
  switch (variant) {
    case 'ok':
    case 'unavailable':
      return stack.token(USER, { rooms, ttl: 3600, jti });
    case 'okShortLived':
      return stack.token(USER, { rooms, ttl: SHORT_TTL_S, jti });
    case 'okRefreshed':
      return stack.token(USER, { rooms, ttl: 7200, jti });
    case 'okOtherUser':
      return stack.token(OTHER_USER, { rooms, ttl: 7200, jti });
    case 'invalid':
      return stack.token(USER, { rooms, aud: 'not-chatgate', jti });
    case 'expired':
      return stack.token(USER, { rooms, ttl: -60, jti });
  }
}

/** The verdict the path expects for the check a frame starts: the next one of its kind. */
function upcomingVerdict(later: readonly ModelEvent[], type: string): VerifyVariant {
  const done = later.find((e) => e.type === type) as DoneEvent | undefined;
  return done ? variantOf(done.output!) : type === internalEvent.verified ? 'ok' : 'okRefreshed';
}

const oversizedFrame = JSON.stringify({ type: 'send', id: 'big', to: { user: USER }, body: 'x'.repeat(70_000) });

/**
 * Makes `event` happen to the real session. `prev` and `next` are the model's states around it;
 * `later` are the path's events after it, which say which token a frame must carry and whether
 * the client must stop reading to let the close grace run out.
 */
async function perform(
  world: World,
  event: ModelEvent,
  prev: ModelSnapshot,
  next: ModelSnapshot,
  later: readonly ModelEvent[],
): Promise<void> {
  const { client, latch } = world;
  const startsCheck = prev.matches({ open: 'awaitingAuth' }) && next.matches({ open: 'authenticating' });
  const startsRefresh =
    prev.matches({ open: { active: { refresh: 'idle' } } }) && next.matches({ open: { active: { refresh: 'verifying' } } });
  const e = event as ConnectionEvent & Record<string, any>;
  switch (event.type) {
    case 'frame.auth': {
      const jti = randomUUID();
      const variant = startsCheck ? upcomingVerdict(later, internalEvent.verified) : 'ok';
      client.send({ type: 'auth', token: await tokenFor(world.stack, variant, jti) });
      if (startsCheck) {
        world.jti = jti;
        await latch.asked();
      }
      return;
    }
    case 'frame.refresh': {
      const variant = startsRefresh ? upcomingVerdict(later, internalEvent.refreshVerified) : 'okRefreshed';
      const token = await tokenFor(world.stack, variant, randomUUID());
      // The auth service goes away just before a refresh it must not be able to check.
      if (startsRefresh && variant === 'unavailable') await world.stack.auth!.close();
      client.send({ type: 'refresh', id: e.id, token });
      if (startsRefresh) await latch.asked();
      return;
    }
    case 'frame.join':
    case 'frame.leave':
      client.send({ type: e.type.slice('frame.'.length), id: e.id, room: e.room });
      return;
    case 'frame.send':
      client.send({ type: 'send', id: e.id, to: e.to, body: e.body });
      return;
    case 'frame.ping':
      client.send({ type: 'ping', id: e.id });
      return;
    case 'frame.invalid':
      client.send('{not json');
      return;
    case 'frame.binary':
      client.ws.send(Buffer.from([1, 2, 3]));
      if (later[0]?.type === internalEvent.closeGrace) stopReading(client);
      return;
    case 'frame.tooLarge':
      client.send(oversizedFrame);
      return;
    case 'socket.closed':
      // In `open` the client closes; in `closing` it answers the node's close, as `ws` does itself.
      if (!prev.matches('closing')) client.ws.close(e.code);
      return;
    case 'node.shutdown':
      world.shutdown = world.gateway.close();
      return;
    case 'session.revoked': {
      // What `chatgate revoke --jti` does: ask the auth service, which broadcasts it to the nodes.
      const nc = await connectNats(world.stack.nats[0]!.url, 'model-revoke');
      try {
        const reply = (await nc.request(subjects.authRevoke, JSON.stringify({ jti: world.jti }), { timeout: WAIT_MS })).json<{ ok: boolean }>();
        expect(reply.ok).toBe(true);
      } finally {
        await closeNats(nc);
      }
      return;
    }
    case 'heartbeat.lost':
      // A client that no longer answers the node's pings. `ws` takes `autoPong` only when the
      // socket is made, and the harness client makes its own.
      (client.ws as unknown as { _autoPong: boolean })._autoPong = false;
      return;
    case internalEvent.verified:
    case internalEvent.refreshVerified: {
      const expected = (event as DoneEvent).output!;
      const verdict = await latch.release();
      expect(verdict.outcome, 'the real verdict is the one the path asked for').toBe(expected.outcome);
      if (verdict.outcome === 'ok' && expected.outcome === 'ok') {
        expect(verdict.claims.sub).toBe(expected.claims.sub);
        expect(verdict.degraded).toBe(false);
      }
      return;
    }
    case internalEvent.subscribed:
      // The node puts the subscription in place by itself; the welcome says it is done.
      return;
    default:
      if (timerEvents.has(event.type)) return; // the node's own timer (short on this gateway)
      throw new Error(`the driver cannot produce ${event.type}`);
  }
}

/** The client stops reading its socket: the node's close frame stays unanswered. */
function stopReading(client: TestClient): void {
  (client.ws as unknown as { _socket: { pause(): void } })._socket.pause();
}
function resumeReading(client: TestClient): void {
  (client.ws as unknown as { _socket: { resume(): void } })._socket.resume();
}

// ---------------------------------------------------------------------------------------------
// Playing a path

const isOpen = (s: ModelSnapshot) => s.status !== 'done' && !s.matches('closing');

/** Events that the machine answers without leaving the state, to see on the wire where it is. */
function probesFor(s: ModelSnapshot): ModelEvent[] {
  if (!isOpen(s)) return [];
  if (s.matches({ open: 'awaitingAuth' })) return [ev.ping, ev.joinRoom];
  if (s.matches({ open: { authenticating: 'checkingToken' } })) return [ev.ping, ev.auth];
  // Subscribing lasts one NATS round trip, and a short-lived token's timers run on the real clock.
  if (s.matches({ open: { authenticating: 'subscribing' } }) || isShortLived(s)) return [];
  if (s.matches({ open: { active: { refresh: 'verifying' } } })) return [ev.ping, ev.refresh];
  // Sending to the room tells whether it is joined: ack, or error forbidden.
  return [ev.ping, ev.auth, ev.sendToRoom];
}

class Player {
  snapshot: ModelSnapshot;
  #ids = 0;
  constructor(readonly world: World) {
    this.snapshot = initialTransition(connectionMachine, modelInput)[0];
  }

  /** The model's event with frame ids of its own, as the client will send them. */
  #withId(event: ModelEvent): ModelEvent {
    return 'id' in event ? { ...event, id: `${++this.#ids}-${event.type.slice('frame.'.length)}` } : event;
  }

  /** One step: the event, the frames and close the machine says it causes, the state reached. */
  async step(template: ModelEvent, later: readonly ModelEvent[], expectedState?: ModelSnapshot): Promise<void> {
    const { world } = this;
    const prev = this.snapshot;
    const event = this.#withId(template);
    const [next, actions] = transition(connectionMachine, prev, event as ConnectionEvent);
    this.snapshot = next;
    if (expectedState) expect(abstractState(next), 'the replayed model follows the generated path').toBe(abstractState(expectedState));

    await perform(world, event, prev, next, later);
    for (const expected of expectedFrames(actions, next, world)) await take(world, expected);
    const promised = documented(event, prev);
    if (promised.error !== undefined) {
      const id = errorIdFor(event, prev);
      // `message` is for people; the code and the id are the contract.
      await take(world, {
        what: `error ${promised.error} with id ${id} (docs/protocol.md)`,
        test: (f) => f.type === 'error' && f.code === promised.error && f.id === id,
      });
    }
    if (promised.close !== undefined) world.closeCode = promised.close;

    const paused = later[0]?.type === internalEvent.closeGrace;
    if (promised.close !== undefined && !paused) {
      expect(await world.client.closedWith(WAIT_MS), 'close code (docs/protocol.md)').toBe(promised.close);
    }
    if (event.type === internalEvent.closeGrace) {
      // The client never answered: the node cuts the connection when the grace is over.
      expect(world.client.ws.readyState, 'the client still waits').toBe(world.client.ws.OPEN);
      await until('the node has let the session go', () => world.gateway.sessions.size === 0, CLOSE_GRACE_WAIT_MS);
      resumeReading(world.client);
      expect(await world.client.closedWith(WAIT_MS), 'close code (docs/protocol.md)').toBe(world.closeCode);
    }
    if (next.status === 'done') {
      await until('the node has let the session go', () => world.gateway.sessions.size === 0);
      await world.shutdown;
    }
  }

  /** Checks the state on the wire: probes that the machine answers without leaving it. */
  async checkState(nextEvent: ModelEvent | undefined): Promise<void> {
    // A timer comes next: nothing may be placed before it.
    if (nextEvent && timerEvents.has(nextEvent.type)) return;
    for (const probe of probesFor(this.snapshot)) {
      const before = abstractState(this.snapshot);
      await this.step(probe, []);
      expect(abstractState(this.snapshot), `probe ${probe.type} leaves the state as it was`).toBe(before);
    }
  }
}

async function play(path: ModelPath): Promise<void> {
  const world = await startWorld(path);
  const player = new Player(world);
  await player.checkState(path.events[0]);
  for (const [i, event] of path.events.entries()) {
    await player.step(event, path.events.slice(i + 1), path.states[i]);
    await player.checkState(path.events[i + 1]);
  }
  const unannounced = world.client.frames.filter((f) => !world.consumed.has(f));
  expect(unannounced, 'frames the machine did not announce').toEqual([]);
}

const paths = modelPaths();
/**
 * The paths the model generates today (one per transition of its abstract graph). Fewer means a
 * change to the machine or the model has cut transitions out of the test; raise it when it grows.
 */
const MIN_PATHS = 43;

describe('model - the oracle is the contract', () => {
  const protocol = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  it('model - every close code the oracle expects is in docs/protocol.md with that meaning', () => {
    for (const { code, meaning } of Object.values(documentedClose)) {
      expect(protocol, `${code} ${meaning}`).toContain(`| ${code} | ${meaning} |`);
    }
  });
  it('model - every error code the oracle expects is in docs/protocol.md', () => {
    for (const code of documentedErrors) expect(protocol, code).toMatch(new RegExp(`^\\| \`${code}\` \\|`, 'm'));
  });
  it(`model - the model generates at least ${MIN_PATHS} paths`, () => {
    expect(paths.length).toBeGreaterThanOrEqual(MIN_PATHS);
  });
});

describe('model - paths through the connection machine against a real gateway', () => {
  for (const path of paths) {
    it(`model - ${path.name}`, () => play(path));
  }
});
