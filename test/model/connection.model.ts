/**
 * The model for the model-based tests of the connection machine: which events may happen in each
 * state, with which payloads, and how the reached states are told apart. The paths are generated
 * with `@xstate/graph` from the real `connectionMachine`, not from a copy of it.
 *
 * How the real machine is traversed. `getShortestPaths` steps the machine with its pure
 * `transition`, so nothing it invokes runs and no timer fires. What would come back from an
 * invoked actor or a timer is offered as an event like any other:
 * - `xstate.done.actor.<invoke id>` with an `output` stands for the `verifyToken` actor resolving
 *   (one event per outcome: ok, ok with a short-lived token, invalid, expired, unavailable) and for
 *   `subscribeUser` resolving;
 * - `xstate.after.<delay>.<state id>` stands for a delayed transition whose time has come
 *   (authTimeout, untilExpiring, untilExpiry, closeGrace).
 * The invoke ids and delayed event types are read from the machine's state nodes, so the model
 * follows the machine when it changes. Time in the model is one fixed instant, `MODEL_NOW`: a
 * short-lived token has `exp` at that instant (its warning and its expiry are both due when their
 * timers fire), a long-lived one an hour later (its timers are never offered).
 *
 * Bounds. A state is told apart by its state value and the few facts of its context that change
 * what a client sees (authenticated, short-lived token, rooms joined, frames held, close code);
 * counters (strikes, send tokens, rate-limited sends) are left out, so the thresholds behind them
 * (11th malformed frame, 33rd held frame, send flood, room limit) are not reached here: they are
 * covered by test/machines/connection.test.ts, test/integration/frames.test.ts and
 * test/integration/ops.test.ts. Each path is the shortest way to take one transition of that
 * abstract graph (one path per edge, prefixes dropped), and the events offered are cut down per
 * state in `modelEvents` so that every path can be played against a real gateway.
 */
import { getShortestPaths, type StatePath } from '@xstate/graph';
import type { SnapshotFrom } from 'xstate';
import {
  connectionMachine,
  type ConnectionEvent,
  type ConnectionInput,
  type VerifyResult,
} from '../../machines/connection.machine.ts';
import { CloseCode } from '../../machines/codes.ts';

export type ModelSnapshot = SnapshotFrom<typeof connectionMachine>;

/** The model's clock: one instant (milliseconds since the epoch). */
export const MODEL_NOW = Date.UTC(2030, 0, 1);
export const MODEL_SESSION = 'model-session';
export const USER = 'model-user';
export const OTHER_USER = 'model-other';
/** The room every model token grants. */
export const ROOM = 'lobby';
/** A room no model token grants. */
export const FORBIDDEN_ROOM = 'vault';

const LONG_EXP = MODEL_NOW / 1000 + 3600;
const REFRESHED_EXP = MODEL_NOW / 1000 + 7200;
const SHORT_EXP = MODEL_NOW / 1000;

export const modelInput: ConnectionInput = { session: MODEL_SESSION, now: () => MODEL_NOW };

const stateNode = (path: string) => connectionMachine.getStateNodeById(`connection.${path}`);
const doneEventType = (path: string) => `xstate.done.actor.${stateNode(path).invoke[0]!.id}`;
const afterEventType = (path: string) => stateNode(path).after[0]!.eventType;

/** Event types the machine receives from its own actors and timers, read from its definition. */
export const internalEvent = {
  verified: doneEventType('open.authenticating.checkingToken'),
  subscribed: doneEventType('open.authenticating.subscribing'),
  refreshVerified: doneEventType('open.active.refresh.verifying'),
  authTimeout: afterEventType('open.awaitingAuth'),
  untilExpiring: afterEventType('open.active.token.valid'),
  untilExpiry: afterEventType('open.active.token.expiring'),
  closeGrace: afterEventType('closing'),
} as const;

export type DoneEvent = { type: string; output: VerifyResult | undefined };
export type AfterEvent = { type: string };
export type ModelEvent = ConnectionEvent | DoneEvent | AfterEvent;

const claims = (sub: string, exp: number) => ({ sub, exp, rooms: [ROOM] });
export const verifyResult = {
  ok: { outcome: 'ok', claims: claims(USER, LONG_EXP), degraded: false },
  okShortLived: { outcome: 'ok', claims: claims(USER, SHORT_EXP), degraded: false },
  okRefreshed: { outcome: 'ok', claims: claims(USER, REFRESHED_EXP), degraded: false },
  okOtherUser: { outcome: 'ok', claims: claims(OTHER_USER, REFRESHED_EXP), degraded: false },
  invalid: { outcome: 'invalid', reason: 'model' },
  expired: { outcome: 'expired', reason: 'model' },
  unavailable: { outcome: 'unavailable', reason: 'model' },
} satisfies Record<string, VerifyResult>;
export type VerifyVariant = keyof typeof verifyResult;

/** The events of the model. Frame ids are placeholders: the driver gives each step its own. */
export const ev = {
  auth: { type: 'frame.auth', token: 'model-token' },
  joinRoom: { type: 'frame.join', id: 'join', room: ROOM },
  joinForbiddenRoom: { type: 'frame.join', id: 'join', room: FORBIDDEN_ROOM },
  leaveRoom: { type: 'frame.leave', id: 'leave', room: ROOM },
  sendToUser: { type: 'frame.send', id: 'send', to: { user: USER }, body: 'model' },
  sendToRoom: { type: 'frame.send', id: 'send', to: { room: ROOM }, body: 'model' },
  refresh: { type: 'frame.refresh', id: 'refresh', token: 'model-token' },
  ping: { type: 'frame.ping', id: 'ping' },
  invalid: { type: 'frame.invalid', reason: 'model' },
  binary: { type: 'frame.binary' },
  tooLarge: { type: 'frame.tooLarge' },
  closedByPeer: { type: 'socket.closed', code: CloseCode.normal },
  shutdown: { type: 'node.shutdown' },
  revoked: { type: 'session.revoked', reason: 'model' },
  heartbeatLost: { type: 'heartbeat.lost' },
  verified: (variant: VerifyVariant): DoneEvent => ({ type: internalEvent.verified, output: verifyResult[variant] }),
  subscribed: { type: internalEvent.subscribed, output: undefined } as DoneEvent,
  refreshVerified: (variant: VerifyVariant): DoneEvent => ({
    type: internalEvent.refreshVerified,
    output: verifyResult[variant],
  }),
  authTimeout: { type: internalEvent.authTimeout },
  untilExpiring: { type: internalEvent.untilExpiring },
  untilExpiry: { type: internalEvent.untilExpiry },
  closeGrace: { type: internalEvent.closeGrace },
  /** The peer answers the node's close frame (`ws` does so by itself). */
  closeAnswered: (code: number) => ({ type: 'socket.closed', code }),
} as const satisfies Record<string, ModelEvent | ((arg: never) => ModelEvent)>;

/**
 * Every event the machine knows is offered somewhere, except these, left out on purpose.
 * (`heartbeat.lost` is in: a client that stops answering the node's pings, on a gateway with a
 * short HEARTBEAT_INTERVAL_MS, produces it; no integration test did so before.)
 * - `socket.slow`: the node writes faster than a client reads only after megabytes have filled
 *   the kernel's socket buffers; covered by test/integration/ops.test.ts and closes.test.ts
 *   (4009), and by test/machines/connection.test.ts in every state.
 * - `session.confirmed`: a degraded session passing its re-check once the auth service is back;
 *   the contract sends no frame for it, so there is nothing to assert on the wire. Covered by
 *   test/machines/connection.test.ts and test/integration/resilience.test.ts.
 * - `verifyToken` or `subscribeUser` failing (`xstate.error.actor.*`, 1011 / 1013 `messaging
 *   unavailable`) and the `internal` refresh error: a bug in the node or a NATS failure at that
 *   instant, not something a client does. Covered by test/machines/connection.test.ts and
 *   test/integration/closes.test.ts (1011).
 * - `frame.send`/`leave`/`refresh` before authentication: the same transition as `frame.join`
 *   there (error `unauthorized`), which stands for all four; test/integration/auth.test.ts has them.
 * - the `reenter` branches of the expiry timers (a wait longer than one Node timer, ~24.8 days).
 *   Covered by test/machines/connection.test.ts and test/integration/auth.test.ts.
 */
export function modelEvents(s: ModelSnapshot): ModelEvent[] {
  const c = s.context;
  if (s.status === 'done') return [];
  if (s.matches('closing')) {
    const events: ModelEvent[] = [ev.closeAnswered(c.closeCode ?? CloseCode.normal)];
    // The grace is a fixed 5 s in the machine: one path (a binary frame before auth) pays for it.
    if (c.closeCode === CloseCode.unsupportedData && c.user === undefined) events.push(ev.closeGrace);
    return events;
  }
  if (s.matches({ open: 'awaitingAuth' })) {
    return [ev.auth, ev.joinRoom, ev.ping, ev.invalid, ev.binary, ev.tooLarge, ev.closedByPeer, ev.shutdown, ev.authTimeout];
  }
  if (s.matches({ open: { authenticating: 'checkingToken' } })) {
    if (c.held.length > 0) return [ev.verified('ok')];
    return [
      ev.verified('ok'),
      ev.verified('okShortLived'),
      ev.verified('invalid'),
      ev.verified('expired'),
      ev.verified('unavailable'),
      ev.auth,
      ev.joinRoom,
      ev.ping,
      ev.closedByPeer,
    ];
  }
  // The user's subscription takes one NATS round trip that a client cannot hold open, so nothing
  // else is placed inside it.
  if (s.matches({ open: { authenticating: 'subscribing' } })) return [ev.subscribed];
  const shortLived = isShortLived(s);
  if (s.matches({ open: { active: { refresh: 'verifying' } } })) {
    // Every outcome once, before any join; with a room joined, the one that keeps it.
    if (shortLived || c.joined.length > 0) return [ev.refreshVerified('okRefreshed')];
    return [
      ev.refreshVerified('okRefreshed'),
      ev.refreshVerified('okOtherUser'),
      ev.refreshVerified('invalid'),
      ev.refreshVerified('unavailable'),
      ev.refresh,
    ];
  }
  // A short-lived token's timers run on the real clock: only they and a refresh may happen.
  if (shortLived) {
    return s.matches({ open: { active: { token: 'valid' } } }) ? [ev.untilExpiring] : [ev.untilExpiry, ev.refresh];
  }
  const events: ModelEvent[] = [
    ev.joinRoom,
    ev.joinForbiddenRoom,
    ev.leaveRoom,
    ev.sendToUser,
    ev.sendToRoom,
    ev.refresh,
    ev.auth,
  ];
  // Events that end the session or do the same in every room state: offered before any join.
  if (c.joined.length === 0) {
    events.push(ev.ping, ev.invalid, ev.binary, ev.tooLarge, ev.closedByPeer, ev.shutdown, ev.revoked, ev.heartbeatLost);
  }
  return events;
}

export const isShortLived = (s: ModelSnapshot) =>
  s.context.exp !== undefined && s.context.exp * 1000 <= MODEL_NOW;

/** What tells two states apart, for a client. */
export function abstractState(s: ModelSnapshot): string {
  const c = s.context;
  if (s.status === 'done' || s.matches('closing')) {
    return JSON.stringify({ value: s.value, closeCode: c.closeCode, authenticated: c.user !== undefined });
  }
  return JSON.stringify({
    value: s.value,
    user: c.user,
    shortLived: isShortLived(s) || undefined,
    joined: c.joined.length ? [...c.joined].sort() : undefined,
    held: c.held.length > 0 || undefined,
  });
}

/** A readable name for a model event, taken in state `from`. */
export function describeEvent(e: ModelEvent, from: ModelSnapshot): string {
  const done = (e as DoneEvent).output;
  switch (e.type) {
    case 'frame.auth':
      return from.matches({ open: 'awaitingAuth' }) ? 'auth frame' : 'auth frame again';
    case 'frame.join':
      if (from.matches({ open: 'awaitingAuth' })) return 'join before auth';
      if (from.matches({ open: 'authenticating' })) return 'join while checking';
      return (e as { room: string }).room === ROOM ? 'join allowed' : 'join forbidden';
    case 'frame.leave':
      return 'leave';
    case 'frame.send':
      return 'user' in (e as { to: object }).to ? 'send to user' : 'send to room';
    case 'frame.refresh':
      return from.matches({ open: { active: { refresh: 'verifying' } } }) ? 'refresh frame again' : 'refresh frame';
    case 'frame.ping':
      return 'ping';
    case 'frame.invalid':
      return 'malformed frame';
    case 'frame.binary':
      return 'binary frame';
    case 'frame.tooLarge':
      return 'oversized frame';
    case 'socket.closed':
      return (e as { code: number }).code === CloseCode.normal ? 'closed by peer' : 'peer answers close';
    case 'node.shutdown':
      return 'node shutdown';
    case 'session.revoked':
      return 'token revoked';
    case 'heartbeat.lost':
      return 'heartbeat lost';
    case internalEvent.verified:
    case internalEvent.refreshVerified: {
      const what = e.type === internalEvent.verified ? 'token' : 'refresh';
      const variant = variantOf(done!);
      return {
        ok: `${what} ok`,
        okShortLived: `${what} ok (short-lived)`,
        okRefreshed: `${what} ok`,
        okOtherUser: `${what} for another user`,
        invalid: `${what} invalid`,
        expired: `${what} expired`,
        unavailable: `${what} unavailable`,
      }[variant];
    }
    case internalEvent.subscribed:
      return 'subscribed';
    case internalEvent.authTimeout:
      return 'auth timeout';
    case internalEvent.untilExpiring:
      return 'expiry warning due';
    case internalEvent.untilExpiry:
      return 'token expiry due';
    case internalEvent.closeGrace:
      return 'close grace elapsed';
    default:
      throw new Error(`no name for model event ${e.type}`);
  }
}

export function variantOf(result: VerifyResult): VerifyVariant {
  const found = (Object.keys(verifyResult) as VerifyVariant[]).find((k) => verifyResult[k] === result);
  if (!found) throw new Error(`not a model verify result: ${JSON.stringify(result)}`);
  return found;
}

export interface ModelPath {
  name: string;
  /** The machine's initial state. */
  initial: ModelSnapshot;
  /** The events after `xstate.init`, in order. */
  events: ModelEvent[];
  /** The model's state after each event. */
  states: ModelSnapshot[];
}

/**
 * One path per transition of the abstract graph: the shortest way to its source state, then the
 * transition. A path that is the start of a longer one is dropped, since every step of a path is
 * checked, not only its end.
 */
export function modelPaths(): ModelPath[] {
  const paths: Array<StatePath<ModelSnapshot, ConnectionEvent>> = getShortestPaths(connectionMachine, {
    input: modelInput,
    events: modelEvents as unknown as (s: ModelSnapshot) => ConnectionEvent[],
    // A node is a transition: where it came from, by which event, where it went.
    serializeState: (state, event, prev) =>
      event && prev
        ? `${abstractState(prev)} --${JSON.stringify(event)}--> ${abstractState(state)}`
        : abstractState(state),
  });
  const all = paths.map((p) => ({
    initial: p.steps[0]!.state,
    events: p.steps.slice(1).map((s) => s.event as ModelEvent),
    states: p.steps.slice(1).map((s) => s.state),
  }));
  const keys = all.map((p) => p.events.map((e) => JSON.stringify(e)));
  const isPrefixOfAnother = (i: number) =>
    keys.some((other, j) => j !== i && other.length > keys[i]!.length && keys[i]!.every((k, n) => other[n] === k));
  return all
    .filter((p, i) => p.events.length > 0 && !isPrefixOfAnother(i))
    .map((p) => ({ ...p, name: p.events.map((e, i) => describeEvent(e, p.states[i - 1] ?? p.initial)).join(' → ') }))
    .sort((a, b) => a.events.length - b.events.length || a.name.localeCompare(b.name));
}
