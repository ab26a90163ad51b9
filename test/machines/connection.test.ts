/**
 * Unit tests of the pure connection machine. Time is a simulated clock, the effects are recorders,
 * and the two promise actors resolve only when a test says so; nothing here touches a socket,
 * NATS or the real clock.
 */
import { afterEach, expect, test } from 'vitest';
import { createActor, fromPromise, SimulatedClock, type StateValue } from 'xstate';
import {
  connectionMachine,
  MAX_TIMER_MS,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionLimits,
  type RoomGrant,
  type VerifiedClaims,
  type VerifyResult,
} from '../../machines/connection.machine.ts';
import { CloseCode, ErrorCode } from '../../machines/codes.ts';

const T0 = Date.UTC(2025, 0, 1);
const SECOND = 1000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const YEAR = 365 * DAY;
const AUTH_TIMEOUT_MS = 3000;
const CLOSE_GRACE_MS = 2000;
const SESSION = 's1';

/** More timers than this firing in one step of the clock means they re-arm without end. */
const MAX_TIMERS_PER_STEP = 1000;

/**
 * A simulated clock that behaves like Node's timers where xstate's `SimulatedClock` does not:
 * - a delay above 2^31-1 ms fires after 1 ms, as Node's `setTimeout` does;
 * - a timer that is due when the clock stops is run, even when it was set by the last callback
 *   of a flush (`SimulatedClock` only notices new timers before running the next one).
 * It records every delay asked for, and fails the test instead of hanging when timers keep
 * re-arming themselves at the same instant.
 */
class NodeLikeClock extends SimulatedClock {
  readonly delays: number[] = [];
  #fired = 0;
  #firedThisStep = 0;
  override setTimeout(fn: (...args: any[]) => void, timeout: number): number {
    this.delays.push(timeout);
    const run = (...args: any[]) => {
      this.#fired++;
      if (++this.#firedThisStep > MAX_TIMERS_PER_STEP) {
        throw new Error(`more than ${MAX_TIMERS_PER_STEP} timers fired at ${this.now()}: a timer loop`);
      }
      fn(...args);
    };
    return super.setTimeout(run, timeout > MAX_TIMER_MS ? 1 : timeout);
  }
  override increment(ms: number): void {
    this.#firedThisStep = 0;
    super.increment(ms);
    for (let fired = -1; fired !== this.#fired; ) {
      fired = this.#fired;
      super.increment(0);
    }
  }
}

interface Pending<I, O> {
  input: I;
  resolve: (value: O) => void;
  reject: (reason: unknown) => void;
}

interface Effect {
  type: string;
  params: unknown;
  /** Simulated time of the call. */
  at: number;
  /** What the effect could read from the context when it ran. */
  context: Pick<ConnectionContext, 'user' | 'exp' | 'degraded' | 'closeCode' | 'closeReason'>;
}

/** Lets promise callbacks run; not a timed wait. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Every actor a test started, stopped after it. */
const harnesses: { actor: { stop(): void }; errors: unknown[] }[] = [];

afterEach(() => {
  for (const h of harnesses.splice(0)) {
    h.actor.stop();
    // Every root actor has an error observer; none of these may have reported anything.
    expect(h.errors).toEqual([]);
  }
});

type Harness = ReturnType<typeof start>;

function start(options: { token?: string; limits?: Partial<ConnectionLimits> } = {}) {
  const clock = new NodeLikeClock();
  clock.set(T0);
  const effects: Effect[] = [];
  const verifyCalls: Pending<{ token: string; session: string }, VerifyResult>[] = [];
  const subscribeCalls: Pending<{ session: string; user: string }, void>[] = [];
  const errors: unknown[] = [];
  const heldTokenCalls: { type: string; params: unknown }[] = [];

  const record =
    (type: string) =>
    ({ context }: { context: ConnectionContext }, params: unknown) => {
      effects.push({
        type,
        params,
        at: clock.now(),
        context: {
          user: context.user,
          exp: context.exp,
          degraded: context.degraded,
          closeCode: context.closeCode,
          closeReason: context.closeReason,
        },
      });
    };

  const logic = connectionMachine.provide({
    actions: {
      sendWelcome: record('sendWelcome'),
      // Kept apart from `effects`: they say what happens to the token held for a re-check.
      adoptCheckedToken: (_, params) => void heldTokenCalls.push({ type: 'adoptCheckedToken', params }),
      dropCheckedToken: () => void heldTokenCalls.push({ type: 'dropCheckedToken', params: undefined }),
      sendAck: record('sendAck'),
      sendError: record('sendError'),
      sendPong: record('sendPong'),
      sendExpiring: record('sendExpiring'),
      sendRefreshAck: record('sendRefreshAck'),
      subscribeRoomAndAck: record('subscribeRoomAndAck'),
      unsubscribeRooms: record('unsubscribeRooms'),
      releaseInterests: record('releaseInterests'),
      publishAndAck: record('publishAndAck'),
      publishSignal: record('publishSignal'),
      answerPresence: record('answerPresence'),
      sendHistory: record('sendHistory'),
      closeSocket: record('closeSocket'),
      terminateSocket: record('terminateSocket'),
    },
    actors: {
      verifyToken: fromPromise<VerifyResult, { token: string; session: string }>(
        ({ input }) =>
          new Promise<VerifyResult>((resolve, reject) => verifyCalls.push({ input, resolve, reject })),
      ),
      subscribeUser: fromPromise<void, { session: string; user: string }>(
        ({ input }) =>
          new Promise<void>((resolve, reject) => subscribeCalls.push({ input, resolve, reject })),
      ),
    },
    delays: { authTimeout: AUTH_TIMEOUT_MS, closeGrace: CLOSE_GRACE_MS },
  });

  const actor = createActor(logic, {
    clock,
    // No clock-skew leeway unless a test asks for it: expiry tests read as "closes at exp".
    input: { session: SESSION, token: options.token, now: () => clock.now(), limits: { clockToleranceMs: 0, ...options.limits } },
  });
  actor.subscribe({ error: (err) => errors.push(err) });
  actor.start();

  const lastPending = <I, O>(calls: Pending<I, O>[], what: string) => {
    const call = calls.at(-1);
    if (!call) throw new Error(`no ${what} call is pending`);
    return call;
  };

  const h = {
    clock,
    actor,
    effects,
    verifyCalls,
    subscribeCalls,
    errors,
    heldTokenCalls,
    send: (event: ConnectionEvent) => actor.send(event),
    value: (): StateValue => actor.getSnapshot().value,
    status: () => actor.getSnapshot().status,
    context: () => actor.getSnapshot().context,
    /** The params of every call of one effect, in order. */
    calls: (type: string) => effects.filter((e) => e.type === type).map((e) => e.params),
    types: () => effects.map((e) => e.type),
    /** Moves the simulated clock on and lets promise callbacks run. */
    advance: async (ms: number) => {
      clock.increment(ms);
      await flush();
    },
    /** Moves the clock in steps no longer than `step`, as a real event loop would wake. */
    advanceInSteps: async (ms: number, step: number) => {
      for (let left = ms; left > 0; left -= step) clock.increment(Math.min(step, left));
      await flush();
    },
    /** Settles the newest `verifyToken` call. */
    verify: async (result: VerifyResult) => {
      lastPending(verifyCalls, 'verifyToken').resolve(result);
      await flush();
    },
    failVerify: async (error: unknown) => {
      lastPending(verifyCalls, 'verifyToken').reject(error);
      await flush();
    },
    subscribed: async () => {
      lastPending(subscribeCalls, 'subscribeUser').resolve();
      await flush();
    },
    failSubscribe: async (error: unknown) => {
      lastPending(subscribeCalls, 'subscribeUser').reject(error);
      await flush();
    },
    /** A token in the expiry window was checked and the user subscribed: the session is active. */
    activate: async (c: VerifiedClaims = claims(clock), degraded = false) => {
      await h.verify({ outcome: 'ok', claims: c, degraded });
      await h.subscribed();
    },
  };
  harnesses.push(h);
  return h;
}

/** Claims for `sub`, expiring `ttlMs` after the clock's now. */
function claims(
  clock: SimulatedClock,
  { sub = 'alice', ttlMs = HOUR, rooms = ['lobby'] as RoomGrant, jti = 'j1' } = {},
): VerifiedClaims {
  return { sub, exp: (clock.now() + ttlMs) / SECOND, rooms, jti };
}

const ok = (c: VerifiedClaims, degraded = false): VerifyResult => ({ outcome: 'ok', claims: c, degraded });

/** An active session for alice (rooms `lobby`, `dev` unless told), token from the upgrade. */
async function activeSession(
  options: { rooms?: RoomGrant; ttlMs?: number; limits?: Partial<ConnectionLimits> } = {},
) {
  const h = start({ token: 'tok', limits: options.limits });
  await h.activate(claims(h.clock, { rooms: options.rooms ?? ['lobby', 'dev'], ttlMs: options.ttlMs }));
  expect(h.value()).toEqual(ACTIVE);
  return h;
}

const AWAITING = { open: 'awaitingAuth' };
const CHECKING = { open: { authenticating: 'checkingToken' } };
const SUBSCRIBING = { open: { authenticating: 'subscribing' } };
const ACTIVE = { open: { active: { token: 'valid', refresh: 'idle' } } };
const EXPIRING = { open: { active: { token: 'expiring', refresh: 'idle' } } };
const REFRESHING = { open: { active: { token: 'valid', refresh: 'verifying' } } };

/** Brings a fresh session to one of the open states. */
const openStates = {
  awaitingAuth: async () => start(),
  checkingToken: async () => start({ token: 'tok' }),
  subscribing: async () => {
    const h = start({ token: 'tok' });
    await h.verify(ok(claims(h.clock)));
    return h;
  },
  active: async () => activeSession(),
  'active (expiring)': async () => {
    const h = await activeSession({ ttlMs: 60 * SECOND });
    await h.advance(30 * SECOND);
    expect(h.value()).toEqual(EXPIRING);
    return h;
  },
  'active (refreshing)': async () => {
    const h = await activeSession();
    h.send({ type: 'frame.refresh', id: 'r', token: 'tok2' });
    expect(h.value()).toEqual(REFRESHING);
    return h;
  },
} satisfies Record<string, () => Promise<Harness>>;

const openStateNames = Object.keys(openStates) as (keyof typeof openStates)[];

/** Every room the machine asked to unsubscribe, over all `unsubscribeRooms` calls. */
const unsubscribedRooms = (h: Harness) =>
  h.calls('unsubscribeRooms').flatMap((p) => (p as { rooms: string[] }).rooms);

/** A server-side close: closing with the code, releasing interests and closing the socket. */
function expectClosing(h: Harness, code: number, reason?: string) {
  expect(h.value()).toBe('closing');
  expect(h.context().closeCode).toBe(code);
  if (reason !== undefined) expect(h.context().closeReason).toBe(reason);
  expect(h.types().slice(-2)).toEqual(['releaseInterests', 'closeSocket']);
  expect(h.effects.at(-1)?.context.closeCode).toBe(code);
}

// ---------------------------------------------------------------------------------------------
// Authentication

test('connection - without a token it awaits auth, checks the token, subscribes the user, then welcomes', async () => {
  const h = start();
  expect(h.value()).toEqual(AWAITING);
  expect(h.verifyCalls).toHaveLength(0);

  h.send({ type: 'frame.auth', token: 'tok-a' });
  expect(h.value()).toEqual(CHECKING);
  expect(h.verifyCalls.map((c) => c.input)).toEqual([{ token: 'tok-a', session: SESSION }]);
  expect(h.context().token).toBe('tok-a');

  const c = claims(h.clock, { rooms: ['lobby'], jti: 'jwt-1' });
  await h.verify(ok(c, true));
  expect(h.value()).toEqual(SUBSCRIBING);
  expect(h.subscribeCalls.map((s) => s.input)).toEqual([{ session: SESSION, user: 'alice' }]);
  expect(h.calls('sendWelcome')).toHaveLength(0);

  await h.subscribed();
  expect(h.value()).toEqual(ACTIVE);
  expect(h.types()).toEqual(['sendWelcome']);
  expect(h.effects[0]?.context).toMatchObject({ user: 'alice', exp: c.exp, degraded: true });
  expect(h.context()).toMatchObject({
    token: undefined,
    user: 'alice',
    exp: c.exp,
    rooms: ['lobby'],
    jti: 'jwt-1',
    degraded: true,
    joined: [],
  });
});

test('connection - a token from the upgrade request is checked at once, with no auth frame', async () => {
  const h = start({ token: 'tok-up' });
  expect(h.value()).toEqual(CHECKING);
  expect(h.verifyCalls.map((c) => c.input)).toEqual([{ token: 'tok-up', session: SESSION }]);
  await h.activate();
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendWelcome')).toHaveLength(1);
  expect(h.context().token).toBeUndefined();
});

test('connection - a socket that does not authenticate within authTimeout closes with 4008', async () => {
  const h = start();
  await h.advance(AUTH_TIMEOUT_MS - 1);
  expect(h.value()).toEqual(AWAITING);
  expect(h.effects).toEqual([]);
  await h.advance(1);
  expectClosing(h, CloseCode.authTimeout, 'authentication timed out');
  expect(h.verifyCalls).toHaveLength(0);
});

test('connection - the auth timeout no longer applies once a token has arrived', async () => {
  const h = start();
  await h.advance(AUTH_TIMEOUT_MS - 1);
  h.send({ type: 'frame.auth', token: 'tok' });
  await h.advance(10 * AUTH_TIMEOUT_MS);
  expect(h.value()).toEqual(CHECKING);
  await h.activate();
  await h.advance(10 * AUTH_TIMEOUT_MS);
  expect(h.value()).toEqual(ACTIVE);
});

test('connection - frames that need a session get error unauthorized before auth', async () => {
  const h = start();
  h.send({ type: 'frame.send', id: 1, to: { user: 'bob' }, body: 'hi' });
  h.send({ type: 'frame.join', id: 2, room: 'lobby' });
  h.send({ type: 'frame.leave', id: 3, room: 'lobby' });
  h.send({ type: 'frame.refresh', id: 'r', token: 'tok' });
  expect(h.value()).toEqual(AWAITING);
  expect(h.types()).toEqual(['sendError', 'sendError', 'sendError', 'sendError']);
  expect(h.calls('sendError')).toEqual(
    [1, 2, 3, 'r'].map((id) => ({ id, code: ErrorCode.unauthorized, message: 'authenticate first' })),
  );
  expect(h.verifyCalls).toHaveLength(0);
  // Refused frames are not held for later.
  h.send({ type: 'frame.auth', token: 'tok' });
  await h.activate();
  expect(h.types()).toEqual(['sendError', 'sendError', 'sendError', 'sendError', 'sendWelcome']);
});

test('connection - frames sent while authenticating are replayed in order after the welcome', async () => {
  const h = start({ token: 'tok' });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.send', id: 2, to: { room: 'lobby' }, body: { text: 'first' } });
  await h.verify(ok(claims(h.clock, { rooms: ['lobby'] })));
  expect(h.value()).toEqual(SUBSCRIBING);
  // Still held while the user's subscription is being put in place.
  h.send({ type: 'frame.send', id: 3, to: { user: 'bob' }, body: 'second' });
  h.send({ type: 'frame.leave', id: 4, room: 'lobby' });
  h.send({ type: 'frame.refresh', id: 5, token: 'tok2' });
  expect(h.effects).toEqual([]);
  expect(h.context().held).toHaveLength(5);

  await h.subscribed();
  expect(h.effects.map((e) => [e.type, e.params])).toEqual([
    ['sendWelcome', undefined],
    ['subscribeRoomAndAck', { room: 'lobby', id: 1 }],
    ['publishAndAck', { id: 2, to: { room: 'lobby' }, body: { text: 'first' } }],
    ['publishAndAck', { id: 3, to: { user: 'bob' }, body: 'second' }],
    ['unsubscribeRooms', { rooms: ['lobby'] }],
    ['sendAck', { id: 4 }],
  ]);
  expect(h.context().held).toEqual([]);
  expect(h.context().joined).toEqual([]);
  // The held refresh was replayed too, with its own token.
  expect(h.value()).toEqual(REFRESHING);
  expect(h.verifyCalls.map((c) => c.input)).toEqual([
    { token: 'tok', session: SESSION },
    { token: 'tok2', session: SESSION },
  ]);
});

test('connection - one frame more than maxHeldFrames while authenticating closes with 1008', async () => {
  const h = start({ token: 'tok', limits: { maxHeldFrames: 3 } });
  for (let id = 1; id <= 3; id++) h.send({ type: 'frame.send', id, to: { user: 'bob' }, body: id });
  expect(h.value()).toEqual(CHECKING);
  expect(h.context().held).toHaveLength(3);
  h.send({ type: 'frame.send', id: 4, to: { user: 'bob' }, body: 4 });
  expectClosing(h, CloseCode.policyViolation, 'too many frames before authentication');
  // A verdict that comes after the close changes nothing.
  await h.verify(ok(claims(h.clock)));
  expect(h.value()).toBe('closing');
  expect(h.calls('sendWelcome')).toHaveLength(0);
  expect(h.subscribeCalls).toHaveLength(0);
});

test('connection - the default hold is 32 frames', async () => {
  const h = start({ token: 'tok' });
  for (let id = 1; id <= 32; id++) h.send({ type: 'frame.join', id, room: 'lobby' });
  expect(h.value()).toEqual(CHECKING);
  h.send({ type: 'frame.join', id: 33, room: 'lobby' });
  expect(h.context().closeCode).toBe(CloseCode.policyViolation);
});

test('connection - a second auth frame is refused with bad_request while authenticating and once active', async () => {
  const h = start();
  h.send({ type: 'frame.auth', token: 'tok' });
  h.send({ type: 'frame.auth', token: 'other' });
  expect(h.value()).toEqual(CHECKING);
  expect(h.verifyCalls).toHaveLength(1);
  expect(h.context().token).toBe('tok');
  await h.verify(ok(claims(h.clock)));
  h.send({ type: 'frame.auth', token: 'other' });
  await h.subscribed();
  h.send({ type: 'frame.auth', token: 'other' });
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendError')).toEqual([
    { code: ErrorCode.badRequest, message: 'already authenticating' },
    { code: ErrorCode.badRequest, message: 'already authenticating' },
    { code: ErrorCode.badRequest, message: 'already authenticated' },
  ]);
  expect(h.verifyCalls).toHaveLength(1);
});

for (const { outcome, code, reason } of [
  { outcome: 'invalid', code: CloseCode.invalidToken, reason: 'invalid token' },
  { outcome: 'expired', code: CloseCode.tokenExpired, reason: 'token expired' },
  { outcome: 'unavailable', code: CloseCode.tryAgainLater, reason: 'auth service unavailable' },
] as const) {
  test(`connection - a verify outcome of ${outcome} closes with ${code} and forgets the token`, async () => {
    const h = start();
    h.send({ type: 'frame.auth', token: 'tok' });
    h.send({ type: 'frame.join', id: 1, room: 'lobby' });
    await h.verify({ outcome, reason: 'because' });
    expectClosing(h, code, reason);
    expect(h.context().token).toBeUndefined();
    expect(h.context().user).toBeUndefined();
    expect(h.subscribeCalls).toHaveLength(0);
    // Held frames are dropped, never answered.
    expect(h.types()).toEqual(['releaseInterests', 'closeSocket']);
  });
}

test('connection - a verifyToken actor that rejects closes with 1011', async () => {
  const h = start({ token: 'tok' });
  await h.failVerify(new Error('bug'));
  expectClosing(h, CloseCode.internalError, 'internal error');
  expect(h.context().token).toBeUndefined();
  expect(h.subscribeCalls).toHaveLength(0);
});

test('connection - when the user cannot be subscribed the session closes with 1013 and no welcome', async () => {
  const h = start({ token: 'tok' });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  await h.verify(ok(claims(h.clock)));
  await h.failSubscribe(new Error('nats down'));
  expectClosing(h, CloseCode.tryAgainLater, 'messaging unavailable');
  expect(h.types()).toEqual(['releaseInterests', 'closeSocket']);
});

// ---------------------------------------------------------------------------------------------
// Closes from any open state

for (const state of openStateNames) {
  for (const [event, code, reason] of [
    [{ type: 'frame.binary' }, CloseCode.unsupportedData, 'binary frames are not supported'],
    [{ type: 'frame.tooLarge' }, CloseCode.messageTooBig, 'frame too large'],
    [{ type: 'socket.slow' }, CloseCode.slowConsumer, 'slow consumer'],
    [{ type: 'node.shutdown' }, CloseCode.goingAway, 'node going away'],
  ] as const) {
    test(`connection - ${event.type} in ${state} closes with ${code}`, async () => {
      const h = await openStates[state]();
      const before = h.effects.length;
      h.send(event);
      expectClosing(h, code, reason);
      expect(h.types().slice(before)).toEqual(['releaseInterests', 'closeSocket']);
    });
  }
}

test.each(openStateNames)(
  'connection - a peer close in %s ends the session and records the peer code',
  async (state) => {
    const h = await openStates[state]();
    const before = h.effects.length;
    h.send({ type: 'socket.closed', code: 4321 });
    expect(h.value()).toBe('closed');
    expect(h.status()).toBe('done');
    expect(h.context()).toMatchObject({ closeCode: 4321, closeReason: 'closed by peer' });
    // The socket is gone already: nothing is closed, interests are released once.
    expect(h.types().slice(before)).toEqual(['releaseInterests']);
    // Work in flight when the peer left is dropped.
    for (const call of h.verifyCalls) call.resolve(ok(claims(h.clock)));
    for (const call of h.subscribeCalls) call.resolve();
    await h.advance(YEAR);
    expect(h.types().slice(before)).toEqual(['releaseInterests']);
  },
);

test.each(openStateNames)('connection - heartbeat.lost in %s terminates the socket', async (state) => {
  const h = await openStates[state]();
  const before = h.effects.length;
  h.send({ type: 'heartbeat.lost' });
  expect(h.value()).toBe('closed');
  expect(h.status()).toBe('done');
  expect(h.context()).toMatchObject({ closeCode: 1006, closeReason: 'heartbeat lost' });
  expect(h.types().slice(before)).toEqual(['terminateSocket', 'releaseInterests']);
});

test('connection - a token revoked while active closes with 4001', async () => {
  const h = await activeSession();
  h.send({ type: 'session.revoked', reason: 'logout' });
  expectClosing(h, CloseCode.invalidToken, 'token revoked');
});

// ---------------------------------------------------------------------------------------------
// Closing

test('connection - closing ends on socket.closed and keeps its own close code', async () => {
  const h = await activeSession();
  h.send({ type: 'node.shutdown' });
  expectClosing(h, CloseCode.goingAway);
  h.send({ type: 'socket.closed', code: CloseCode.goingAway + 3000 });
  expect(h.value()).toBe('closed');
  expect(h.status()).toBe('done');
  expect(h.context()).toMatchObject({ closeCode: CloseCode.goingAway, closeReason: 'node going away' });
  // Released on entering closing and again on entering closed; not terminated.
  expect(h.types().slice(1)).toEqual(['releaseInterests', 'closeSocket', 'releaseInterests']);
});

test('connection - closing terminates the socket after closeGrace when the peer never answers', async () => {
  const h = await activeSession();
  h.send({ type: 'socket.slow' });
  const before = h.effects.length;
  await h.advance(CLOSE_GRACE_MS - 1);
  expect(h.value()).toBe('closing');
  expect(h.effects).toHaveLength(before);
  await h.advance(1);
  expect(h.value()).toBe('closed');
  expect(h.status()).toBe('done');
  expect(h.context().closeCode).toBe(CloseCode.slowConsumer);
  expect(h.types().slice(before)).toEqual(['terminateSocket', 'releaseInterests']);
});

test('connection - frames and further closes in closing change nothing', async () => {
  const h = await activeSession();
  h.send({ type: 'socket.slow' });
  const before = h.effects.length;
  h.send({ type: 'frame.send', id: 1, to: { user: 'bob' }, body: 'late' });
  h.send({ type: 'frame.ping', id: 2 });
  h.send({ type: 'node.shutdown' });
  h.send({ type: 'frame.binary' });
  h.send({ type: 'heartbeat.lost' });
  expect(h.value()).toBe('closing');
  expect(h.context().closeCode).toBe(CloseCode.slowConsumer);
  expect(h.effects).toHaveLength(before);
});

// ---------------------------------------------------------------------------------------------
// Frames in any state

test.each(['awaitingAuth', 'checkingToken', 'active'] as const)(
  'connection - ping in %s is answered with pong, echoing the id when there is one',
  async (state) => {
    const h = await openStates[state]();
    const before = h.effects.length;
    const value = h.value();
    h.send({ type: 'frame.ping', id: 7 });
    h.send({ type: 'frame.ping', id: 'p' });
    h.send({ type: 'frame.ping' });
    expect(h.effects.slice(before).map((e) => [e.type, e.params])).toEqual([
      ['sendPong', { id: 7 }],
      ['sendPong', { id: 'p' }],
      ['sendPong', { id: undefined }],
    ]);
    expect(h.value()).toEqual(value);
  },
);

test('connection - a malformed frame gets bad_request, and one more than maxStrikes closes with 1008', async () => {
  const h = await activeSession({ limits: { maxStrikes: 3 } });
  h.send({ type: 'frame.invalid', id: 9, reason: 'to: required' });
  h.send({ type: 'frame.invalid', reason: 'frame is not JSON' });
  h.send({ type: 'frame.invalid', id: 'x', reason: 'unknown frame type' });
  expect(h.value()).toEqual(ACTIVE);
  expect(h.context().strikes).toBe(3);
  expect(h.calls('sendError')).toEqual([
    { id: 9, code: ErrorCode.badRequest, message: 'to: required' },
    { id: undefined, code: ErrorCode.badRequest, message: 'frame is not JSON' },
    { id: 'x', code: ErrorCode.badRequest, message: 'unknown frame type' },
  ]);
  h.send({ type: 'frame.invalid', reason: 'frame is not JSON' });
  expectClosing(h, CloseCode.policyViolation, 'too many malformed frames');
  expect(h.calls('sendError')).toHaveLength(3);
});

test('connection - malformed frames count before auth too, with 10 strikes by default', async () => {
  const h = start();
  for (let i = 0; i < 10; i++) h.send({ type: 'frame.invalid', reason: 'frame is not JSON' });
  expect(h.value()).toEqual(AWAITING);
  expect(h.calls('sendError')).toHaveLength(10);
  h.send({ type: 'frame.invalid', reason: 'frame is not JSON' });
  expectClosing(h, CloseCode.policyViolation);
});

// ---------------------------------------------------------------------------------------------
// Durable delivery: since, history, key

test('connection - the auth frame’s since reaches the inbox subscription; a later auth frame cannot change it', async () => {
  const h = start();
  h.send({ type: 'frame.auth', token: 'tok-a', since: 'AAAAAAAA-7' });
  h.send({ type: 'frame.auth', token: 'tok-b', since: 'BBBBBBBB-9' });
  await h.verify(ok(claims(h.clock, { rooms: ['lobby'] }), false));
  expect(h.subscribeCalls.map((s) => s.input)).toEqual([{ session: SESSION, user: 'alice', since: 'AAAAAAAA-7' }]);
});

test('connection - history of the own inbox or a granted room is read (one send token); an ungranted room is forbidden, with a strike', async () => {
  const h = await activeSession({ rooms: ['lobby'], limits: { sendBurst: 2, sendsPerSecond: 1 } });
  h.send({ type: 'frame.history', id: 1, limit: 50 });
  h.send({ type: 'frame.history', id: 3, room: 'secret', limit: 50 });
  h.send({ type: 'frame.history', id: 2, room: 'lobby', before: 'AAAAAAAA-3', limit: 2 });
  h.send({ type: 'frame.history', id: 4, room: 'lobby', limit: 50 });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['sendHistory', { id: 1, room: undefined, before: undefined, limit: 50 }],
    ['sendError', { id: 3, code: ErrorCode.forbidden, message: 'the token does not grant this room' }],
    ['sendHistory', { id: 2, room: 'lobby', before: 'AAAAAAAA-3', limit: 2 }],
    ['sendError', { id: 4, code: ErrorCode.rateLimited, message: 'too many frames', retryAfterMs: 1000 }],
  ]);
  expect(h.context().strikes).toBe(2);
});

test('connection - join with since and send with key pass them to the effects', async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.join', id: 1, room: 'lobby', since: 'AAAAAAAA-5' });
  h.send({ type: 'frame.send', id: 2, to: { user: 'bob' }, body: 'hi', key: 'k-1' });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['subscribeRoomAndAck', { room: 'lobby', id: 1, since: 'AAAAAAAA-5' }],
    ['publishAndAck', { id: 2, to: { user: 'bob' }, body: 'hi', key: 'k-1' }],
  ]);
});

// ---------------------------------------------------------------------------------------------
// Rooms and sending

test('connection - join of a granted room subscribes it and acks', async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['subscribeRoomAndAck', { room: 'lobby', id: 1 }],
  ]);
  expect(h.context().joined).toEqual(['lobby']);
});

test('connection - join of a room the token does not grant is forbidden', async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.join', id: 1, room: 'secret' });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['sendError', { id: 1, code: ErrorCode.forbidden, message: 'the token does not grant this room' }],
  ]);
  expect(h.context().joined).toEqual([]);
});

test('connection - joining a room twice acks without a second subscription', async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.join', id: 2, room: 'lobby' });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['subscribeRoomAndAck', { room: 'lobby', id: 1 }],
    ['sendAck', { id: 2 }],
  ]);
  expect(h.context().joined).toEqual(['lobby']);
});

test("connection - rooms '*' grants every room", async () => {
  const h = await activeSession({ rooms: '*' });
  h.send({ type: 'frame.join', id: 1, room: 'a' });
  h.send({ type: 'frame.join', id: 2, room: 'zz-any' });
  expect(h.calls('subscribeRoomAndAck')).toEqual([
    { room: 'a', id: 1 },
    { room: 'zz-any', id: 2 },
  ]);
  expect(h.calls('sendError')).toEqual([]);
  expect(h.context().joined).toEqual(['a', 'zz-any']);
});

test('connection - leave of a joined room unsubscribes it and acks', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.join', id: 2, room: 'dev' });
  h.send({ type: 'frame.leave', id: 3, room: 'lobby' });
  expect(h.effects.slice(3).map((e) => [e.type, e.params])).toEqual([
    ['unsubscribeRooms', { rooms: ['lobby'] }],
    ['sendAck', { id: 3 }],
  ]);
  expect(h.context().joined).toEqual(['dev']);
});

test('connection - leave of a granted room not joined acks; of a room not granted is forbidden', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.leave', id: 1, room: 'lobby' });
  h.send({ type: 'frame.leave', id: 2, room: 'never-granted' });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['sendAck', { id: 1 }],
    ['sendError', { id: 2, code: 'forbidden', message: 'the token does not grant this room' }],
  ]);
  expect(h.calls('unsubscribeRooms')).toEqual([]);
});

test('connection - send to a user is published and acked', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.send', id: 1, to: { user: 'bob' }, body: { text: 'hi', n: [1, 2] } });
  expect(h.effects.slice(1).map((e) => [e.type, e.params])).toEqual([
    ['publishAndAck', { id: 1, to: { user: 'bob' }, body: { text: 'hi', n: [1, 2] } }],
  ]);
});

test('connection - send to a joined room is published and acked', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.send', id: 2, to: { room: 'lobby' }, body: 'hello room' });
  expect(h.calls('publishAndAck')).toEqual([{ id: 2, to: { room: 'lobby' }, body: 'hello room' }]);
});

test('connection - send to a room not joined is forbidden, even when the token grants it', async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.send', id: 1, to: { room: 'lobby' }, body: 'x' });
  h.send({ type: 'frame.send', id: 2, to: { room: 'secret' }, body: 'x' });
  h.send({ type: 'frame.join', id: 3, room: 'lobby' });
  h.send({ type: 'frame.leave', id: 4, room: 'lobby' });
  h.send({ type: 'frame.send', id: 5, to: { room: 'lobby' }, body: 'x' });
  const forbidden = (id: number) => ({
    id,
    code: ErrorCode.forbidden,
    message: 'join the room before sending to it',
  });
  expect(h.calls('sendError')).toEqual([forbidden(1), forbidden(2), forbidden(5)]);
  expect(h.calls('publishAndAck')).toEqual([]);
});

// ---------------------------------------------------------------------------------------------
// Send rate and room limits

test('connection - sends beyond the burst get rate_limited with a retry hint until the bucket refills', async () => {
  const h = await activeSession({ ttlMs: DAY, limits: { sendBurst: 2, sendsPerSecond: 10 } });
  const send = (id: number) => h.send({ type: 'frame.send', id, to: { user: 'bob' }, body: id });
  send(1);
  send(2);
  send(3);
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1, 2]);
  expect(h.calls('sendError')).toEqual([
    { id: 3, code: ErrorCode.rateLimited, message: 'too many sends', retryAfterMs: 100 },
  ]);
  expect(h.value()).toEqual(ACTIVE);

  await h.advance(60);
  send(4);
  expect(h.calls('sendError').at(-1)).toMatchObject({ id: 4, code: ErrorCode.rateLimited, retryAfterMs: 40 });
  await h.advance(40);
  send(5);
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1, 2, 5]);
  // The bucket never holds more than the burst, however long the session was quiet.
  await h.advance(HOUR);
  expect(h.value()).toEqual(ACTIVE);
  for (let id = 6; id <= 9; id++) send(id);
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1, 2, 5, 6, 7]);
});

test('connection - a send over the user\u2019s budget on the node is rate_limited with its wait, a strike, not published', async () => {
  const h = await activeSession({ ttlMs: DAY });
  h.send({ type: 'frame.send', id: 1, to: { user: 'bob' }, body: 1, bytes: 100, userRetryAfterMs: 250 });
  h.send({ type: 'frame.send', id: 2, to: { user: 'bob' }, body: 2, bytes: 100, userRetryAfterMs: 0 });
  expect(h.calls('publishAndAck')).toEqual([{ id: 2, to: { user: 'bob' }, body: 2 }]);
  expect(h.calls('sendError')).toEqual([
    { id: 1, code: ErrorCode.rateLimited, message: 'too many sends', retryAfterMs: 250 },
  ]);
  expect(h.context().strikes).toBe(1);
});

test('connection - each rate-limited send is a strike: one more than maxStrikes closes with 1008', async () => {
  const h = await activeSession({ limits: { sendBurst: 1, sendsPerSecond: 1, maxStrikes: 3 } });
  const send = (id: number) => h.send({ type: 'frame.send', id, to: { user: 'bob' }, body: id });
  send(1);
  send(2);
  send(3);
  send(4);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.context().strikes).toBe(3);
  expect(h.calls('sendError').map((e) => (e as { code: string }).code)).toEqual([
    ErrorCode.rateLimited,
    ErrorCode.rateLimited,
    ErrorCode.rateLimited,
  ]);
  send(5);
  expectClosing(h, CloseCode.policyViolation, 'too many refused frames');
});

test('connection - strikes are not forgiven by an accepted send', async () => {
  const h = await activeSession({ limits: { sendBurst: 1, sendsPerSecond: 1, maxStrikes: 2 } });
  const send = (id: number) => h.send({ type: 'frame.send', id, to: { user: 'bob' }, body: id });
  send(1);
  send(2);
  await h.advance(SECOND);
  send(3);
  send(4);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1, 3]);
  send(5);
  expectClosing(h, CloseCode.policyViolation, 'too many refused frames');
});

test('connection - a join beyond maxRooms is forbidden until a room is left', async () => {
  const h = await activeSession({ rooms: '*', limits: { maxRooms: 2 } });
  h.send({ type: 'frame.join', id: 1, room: 'a' });
  h.send({ type: 'frame.join', id: 2, room: 'b' });
  h.send({ type: 'frame.join', id: 3, room: 'c' });
  expect(h.calls('sendError')).toEqual([
    { id: 3, code: ErrorCode.forbidden, message: 'room limit reached (2)' },
  ]);
  // Joining a room already joined is not a new room.
  h.send({ type: 'frame.join', id: 4, room: 'a' });
  expect(h.calls('sendAck')).toEqual([{ id: 4 }]);
  h.send({ type: 'frame.leave', id: 5, room: 'b' });
  h.send({ type: 'frame.join', id: 6, room: 'c' });
  expect(h.calls('subscribeRoomAndAck')).toEqual([
    { room: 'a', id: 1 },
    { room: 'b', id: 2 },
    { room: 'c', id: 6 },
  ]);
  expect(h.context().joined).toEqual(['a', 'c']);
});

test('connection - session.confirmed clears degraded and sends nothing', async () => {
  const h = start({ token: 'tok' });
  await h.activate(claims(h.clock), true);
  expect(h.context().degraded).toBe(true);
  const before = h.effects.length;
  h.send({ type: 'session.confirmed' });
  expect(h.context().degraded).toBe(false);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.effects).toHaveLength(before);
});

// ---------------------------------------------------------------------------------------------
// Refresh

test('connection - refresh for the same user acks with the new exp and re-arms the expiry timers', async () => {
  const h = await activeSession({ ttlMs: HOUR });
  const oldExp = h.context().exp!;
  await h.advance(10 * 60 * SECOND);

  h.send({ type: 'frame.refresh', id: 'r1', token: 'tok2' });
  expect(h.value()).toEqual(REFRESHING);
  expect(h.verifyCalls.at(-1)?.input).toEqual({ token: 'tok2', session: SESSION });
  const renewed = claims(h.clock, { ttlMs: 2 * HOUR, rooms: ['lobby', 'dev'], jti: 'j2' });
  await h.verify(ok(renewed, true));
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendRefreshAck')).toEqual([{ id: 'r1', exp: renewed.exp }]);
  expect(h.context()).toMatchObject({ user: 'alice', exp: renewed.exp, jti: 'j2', degraded: true });
  expect(unsubscribedRooms(h)).toEqual([]);

  // Nothing happens at the old token's times...
  await h.advance(oldExp * SECOND - h.clock.now());
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendExpiring')).toEqual([]);
  // ...and everything at the new one's.
  await h.advance(renewed.exp * SECOND - 30 * SECOND - h.clock.now() - 1);
  expect(h.calls('sendExpiring')).toEqual([]);
  await h.advance(1);
  expect(h.value()).toEqual(EXPIRING);
  expect(h.effects.filter((e) => e.type === 'sendExpiring').map((e) => [e.at, e.context.exp])).toEqual([
    [renewed.exp * SECOND - 30 * SECOND, renewed.exp],
  ]);
  await h.advance(30 * SECOND);
  expectClosing(h, CloseCode.tokenExpired, 'token expired');
});

test('connection - refresh after the expiring warning returns the token to valid', async () => {
  const h = await activeSession({ ttlMs: 60 * SECOND });
  await h.advance(40 * SECOND);
  expect(h.value()).toEqual(EXPIRING);
  h.send({ type: 'frame.refresh', id: 2, token: 'tok2' });
  const renewed = claims(h.clock, { ttlMs: HOUR });
  await h.verify(ok(renewed));
  expect(h.value()).toEqual(ACTIVE);
  await h.advance(HOUR - 30 * SECOND - 1);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendExpiring')).toHaveLength(1);
  await h.advance(1);
  expect(h.calls('sendExpiring')).toHaveLength(2);
});

test('connection - refresh with a token for another user is forbidden and changes nothing', async () => {
  const h = await activeSession();
  const before = { ...h.context() };
  h.send({ type: 'frame.refresh', id: 'r1', token: 'mallory' });
  await h.verify(ok(claims(h.clock, { sub: 'mallory', ttlMs: 5 * HOUR, rooms: '*' })));
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendError')).toEqual([
    { id: 'r1', code: ErrorCode.forbidden, message: 'the new token is for another user' },
  ]);
  expect(h.calls('sendRefreshAck')).toEqual([]);
  expect(h.context()).toMatchObject({ user: 'alice', exp: before.exp, rooms: before.rooms, jti: before.jti });
});

test.each(['invalid', 'expired'] as const)(
  'connection - refresh with a token that is %s gets unauthorized and keeps the session',
  async (outcome) => {
    const h = await activeSession();
    const exp = h.context().exp;
    h.send({ type: 'frame.refresh', id: 'r1', token: 'bad' });
    await h.verify({ outcome, reason: 'because' });
    expect(h.value()).toEqual(ACTIVE);
    expect(h.calls('sendError')).toEqual([
      { id: 'r1', code: ErrorCode.unauthorized, message: 'invalid token' },
    ]);
    expect(h.context().exp).toBe(exp);
  },
);

test('connection - refresh while the auth service is unavailable gets unavailable and keeps the session', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.refresh', id: 4, token: 'tok2' });
  await h.verify({ outcome: 'unavailable', reason: 'no responders' });
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendError')).toEqual([
    { id: 4, code: ErrorCode.unavailable, message: 'the auth service cannot be asked now' },
  ]);
});

test('connection - refresh whose verifyToken actor rejects gets internal and keeps the session', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.refresh', id: 4, token: 'tok2' });
  await h.failVerify(new Error('bug'));
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendError')).toEqual([{ id: 4, code: ErrorCode.internal, message: 'internal error' }]);
});

test('connection - a second refresh while one is in flight is refused with bad_request', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.refresh', id: 'first', token: 'tok2' });
  h.send({ type: 'frame.refresh', id: 'second', token: 'tok3' });
  expect(h.verifyCalls.map((c) => c.input.token)).toEqual(['tok', 'tok2']);
  expect(h.calls('sendError')).toEqual([
    { id: 'second', code: ErrorCode.badRequest, message: 'a refresh is already in progress' },
  ]);
  // The first one still completes, acked with its own id.
  const renewed = claims(h.clock, { ttlMs: 2 * HOUR });
  await h.verify(ok(renewed));
  expect(h.calls('sendRefreshAck')).toEqual([{ id: 'first', exp: renewed.exp }]);
  // And another refresh may start afterwards.
  h.send({ type: 'frame.refresh', id: 'third', token: 'tok4' });
  expect(h.value()).toEqual(REFRESHING);
});

test('connection - other frames are served while a refresh is in flight', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.refresh', id: 'r', token: 'tok2' });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.send', id: 2, to: { room: 'lobby' }, body: 'x' });
  expect(h.value()).toEqual(REFRESHING);
  expect(h.calls('subscribeRoomAndAck')).toEqual([{ room: 'lobby', id: 1 }]);
  expect(h.calls('publishAndAck')).toEqual([{ id: 2, to: { room: 'lobby' }, body: 'x' }]);
});

test('connection - refresh with a token that no longer grants a joined room unsubscribes that room', async () => {
  const h = await activeSession({ rooms: ['lobby', 'dev', 'ops'] });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.join', id: 2, room: 'dev' });
  h.send({ type: 'frame.join', id: 3, room: 'ops' });
  h.send({ type: 'frame.refresh', id: 'r', token: 'tok2' });
  const renewed = claims(h.clock, { rooms: ['lobby'], ttlMs: 2 * HOUR });
  await h.verify(ok(renewed));
  const after = h.effects.slice(4);
  expect(after.map((e) => [e.type, e.params])).toEqual([
    ['unsubscribeRooms', { rooms: ['dev', 'ops'] }],
    ['sendRefreshAck', { id: 'r', exp: renewed.exp }],
  ]);
  expect(h.context()).toMatchObject({ joined: ['lobby'], rooms: ['lobby'] });
  // The room is no longer usable either.
  h.send({ type: 'frame.send', id: 4, to: { room: 'dev' }, body: 'x' });
  h.send({ type: 'frame.join', id: 5, room: 'dev' });
  expect(h.calls('sendError').map((e) => (e as { code: string }).code)).toEqual([
    ErrorCode.forbidden,
    ErrorCode.forbidden,
  ]);
});

test("connection - refresh to rooms '*' keeps every joined room", async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.refresh', id: 'r', token: 'tok2' });
  await h.verify(ok(claims(h.clock, { rooms: '*' })));
  expect(unsubscribedRooms(h)).toEqual([]);
  expect(h.context()).toMatchObject({ joined: ['lobby'], rooms: '*' });
});

// ---------------------------------------------------------------------------------------------
// Token expiry

test('connection - expiring is sent expiryWarningMs before exp and the session closes with 4002 at exp', async () => {
  const h = await activeSession({ ttlMs: 10 * 60 * SECOND });
  const exp = h.context().exp! * SECOND;
  await h.advance(exp - 30 * SECOND - h.clock.now() - 1);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendExpiring')).toEqual([]);
  await h.advance(1);
  expect(h.value()).toEqual(EXPIRING);
  expect(h.effects.filter((e) => e.type === 'sendExpiring').map((e) => e.at)).toEqual([exp - 30 * SECOND]);
  await h.advance(30 * SECOND - 1);
  expect(h.value()).toEqual(EXPIRING);
  await h.advance(1);
  expectClosing(h, CloseCode.tokenExpired, 'token expired');
  expect(h.effects.at(-1)?.at).toBe(exp);
  expect(h.calls('sendExpiring')).toHaveLength(1);
});

test('connection - expiryWarningMs from the limits sets when expiring is sent', async () => {
  const h = await activeSession({ ttlMs: 10 * 60 * SECOND, limits: { expiryWarningMs: 5 * 60 * SECOND } });
  await h.advance(5 * 60 * SECOND - 1);
  expect(h.calls('sendExpiring')).toEqual([]);
  await h.advance(1);
  expect(h.calls('sendExpiring')).toHaveLength(1);
  await h.advance(5 * 60 * SECOND);
  expect(h.context().closeCode).toBe(CloseCode.tokenExpired);
});

test('connection - a token shorter than the warning gets expiring at once', async () => {
  const h = await activeSession({ ttlMs: 10 * SECOND });
  await h.advance(0);
  expect(h.value()).toEqual(EXPIRING);
  expect(h.calls('sendExpiring')).toHaveLength(1);
  await h.advance(10 * SECOND);
  expectClosing(h, CloseCode.tokenExpired);
});

test('connection - a token that expires in ten years does not close early', async () => {
  const h = await activeSession({ ttlMs: 10 * YEAR });
  const exp = h.context().exp! * SECOND;
  const warnAt = exp - 30 * SECOND;

  // Thirty days, woken every hour as a real event loop would be: several timer periods pass.
  await h.advanceInSteps(30 * DAY, HOUR);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.status()).toBe('active');
  expect(h.calls('sendExpiring')).toEqual([]);
  expect(h.types()).toEqual(['sendWelcome']);
  // Every wait was short enough for one setTimeout and was armed again when it ran out.
  expect(Math.max(...h.clock.delays)).toBeLessThanOrEqual(MAX_TIMER_MS);
  expect(h.clock.delays.filter((d) => d === MAX_TIMER_MS).length).toBeGreaterThanOrEqual(2);

  // Up to the last millisecond before the warning, still nothing.
  await h.advanceInSteps(warnAt - 1 - h.clock.now(), MAX_TIMER_MS);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendExpiring')).toEqual([]);
  await h.advance(1);
  expect(h.value()).toEqual(EXPIRING);
  expect(h.effects.filter((e) => e.type === 'sendExpiring').map((e) => e.at)).toEqual([warnAt]);
  await h.advance(30 * SECOND - 1);
  expect(h.value()).toEqual(EXPIRING);
  await h.advance(1);
  expectClosing(h, CloseCode.tokenExpired, 'token expired');
  expect(h.effects.at(-1)?.at).toBe(exp);
});

test('connection - the expiry timer is capped and re-armed while expiring too', async () => {
  // A warning window longer than one timer can wait.
  const warning = 40 * DAY;
  const h = await activeSession({ ttlMs: 50 * DAY, limits: { expiryWarningMs: warning } });
  await h.advanceInSteps(10 * DAY, HOUR);
  expect(h.value()).toEqual(EXPIRING);
  await h.advanceInSteps(40 * DAY - 1, HOUR);
  expect(h.value()).toEqual(EXPIRING);
  expect(Math.max(...h.clock.delays)).toBeLessThanOrEqual(MAX_TIMER_MS);
  // Re-arming does not warn again.
  expect(h.calls('sendExpiring')).toHaveLength(1);
  await h.advance(1);
  expectClosing(h, CloseCode.tokenExpired);
});

// ---------------------------------------------------------------------------------------------
// Close codes

interface CloseScenario {
  name: string;
  code: number;
  run: () => Promise<Harness>;
}

/** One path to each close code; the codes test below checks that together they cover the table. */
const closeScenarios: CloseScenario[] = [
  {
    name: 'a missed heartbeat',
    code: CloseCode.abnormalClosure,
    run: async () => {
      const h = await activeSession();
      h.send({ type: 'heartbeat.lost' });
      return h;
    },
  },
  {
    name: 'a peer that closes normally',
    code: CloseCode.normal,
    run: async () => {
      const h = await activeSession();
      h.send({ type: 'socket.closed', code: CloseCode.normal });
      return h;
    },
  },
  {
    name: 'node shutdown',
    code: CloseCode.goingAway,
    run: async () => {
      const h = await activeSession();
      h.send({ type: 'node.shutdown' });
      return h;
    },
  },
  {
    name: 'a binary frame',
    code: CloseCode.unsupportedData,
    run: async () => {
      const h = start();
      h.send({ type: 'frame.binary' });
      return h;
    },
  },
  {
    name: 'too many malformed frames',
    code: CloseCode.policyViolation,
    run: async () => {
      const h = await activeSession({ limits: { maxStrikes: 0 } });
      h.send({ type: 'frame.invalid', reason: 'frame is not JSON' });
      return h;
    },
  },
  {
    name: 'too many frames before authentication',
    code: CloseCode.policyViolation,
    run: async () => {
      const h = start({ token: 'tok', limits: { maxHeldFrames: 0 } });
      h.send({ type: 'frame.join', id: 1, room: 'lobby' });
      return h;
    },
  },
  {
    name: 'a sustained send flood',
    code: CloseCode.policyViolation,
    run: async () => {
      const h = await activeSession({ limits: { sendBurst: 0, maxStrikes: 0 } });
      h.send({ type: 'frame.send', id: 1, to: { user: 'bob' }, body: 'x' });
      return h;
    },
  },
  {
    name: 'a frame too large',
    code: CloseCode.messageTooBig,
    run: async () => {
      const h = await activeSession();
      h.send({ type: 'frame.tooLarge' });
      return h;
    },
  },
  {
    name: 'a verifyToken actor that fails',
    code: CloseCode.internalError,
    run: async () => {
      const h = start({ token: 'tok' });
      await h.failVerify(new Error('bug'));
      return h;
    },
  },
  {
    name: 'an auth service that is unavailable',
    code: CloseCode.tryAgainLater,
    run: async () => {
      const h = start({ token: 'tok' });
      await h.verify({ outcome: 'unavailable', reason: 'timeout' });
      return h;
    },
  },
  {
    name: 'a user subscription that fails',
    code: CloseCode.tryAgainLater,
    run: async () => {
      const h = start({ token: 'tok' });
      await h.verify(ok(claims(h.clock)));
      await h.failSubscribe(new Error('nats down'));
      return h;
    },
  },
  {
    name: 'an invalid token',
    code: CloseCode.invalidToken,
    run: async () => {
      const h = start({ token: 'tok' });
      await h.verify({ outcome: 'invalid', reason: 'bad signature' });
      return h;
    },
  },
  {
    name: 'a revoked token',
    code: CloseCode.invalidToken,
    run: async () => {
      const h = await activeSession();
      h.send({ type: 'session.revoked', reason: 'logout' });
      return h;
    },
  },
  {
    name: 'an expired token',
    code: CloseCode.tokenExpired,
    run: async () => {
      const h = start({ token: 'tok' });
      await h.verify({ outcome: 'expired', reason: 'exp' });
      return h;
    },
  },
  {
    name: 'a token that runs out during the session',
    code: CloseCode.tokenExpired,
    run: async () => {
      const h = await activeSession({ ttlMs: HOUR });
      await h.advance(HOUR);
      return h;
    },
  },
  {
    name: 'no auth in time',
    code: CloseCode.authTimeout,
    run: async () => {
      const h = start();
      await h.advance(AUTH_TIMEOUT_MS);
      return h;
    },
  },
  {
    name: 'a slow consumer',
    code: CloseCode.slowConsumer,
    run: async () => {
      const h = await activeSession();
      h.send({ type: 'socket.slow' });
      return h;
    },
  },
];

/** Runs a scenario to the end (the peer answers any close) and returns the final close code. */
async function finalCloseCode(scenario: CloseScenario) {
  const h = await scenario.run();
  if (h.value() === 'closing') h.send({ type: 'socket.closed', code: h.context().closeCode ?? 1005 });
  expect(h.status()).toBe('done');
  return h.context().closeCode;
}

for (const scenario of closeScenarios) {
  test(`connection - ${scenario.name} ends with close code ${scenario.code}`, async () => {
    expect(await finalCloseCode(scenario)).toBe(scenario.code);
  });
}

test('codes - every close code in the table is reachable from the machine', async () => {
  const reached = new Set<number | undefined>();
  for (const scenario of closeScenarios) reached.add(await finalCloseCode(scenario));
  for (const [name, code] of Object.entries(CloseCode)) {
    expect(reached.has(code), `CloseCode.${name} (${code}) is reached by no scenario`).toBe(true);
  }
});

test('connection - frames before any token count as strikes and end in 1008', async () => {
  const h = start({ limits: { maxStrikes: 2 } });
  for (let i = 0; i < 3; i++) h.send({ type: 'frame.join', id: i, room: 'lobby' });
  expect(h.calls('sendError').map((p) => (p as { code: string }).code)).toEqual(['unauthorized', 'unauthorized']);
  expect(h.actor.getSnapshot().context.closeCode).toBe(1008);
});

test('connection - joins and leaves take from the send bucket: over the rate they get rate_limited', async () => {
  const h = await activeSession({ limits: { sendsPerSecond: 1, sendBurst: 2 } });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.leave', id: 2, room: 'lobby' });
  h.send({ type: 'frame.join', id: 3, room: 'lobby' });
  const errors = h.calls('sendError') as Array<{ id: number; code: string; retryAfterMs?: number }>;
  expect(errors.map((e) => [e.id, e.code])).toEqual([[3, 'rate_limited']]);
  expect(errors[0]!.retryAfterMs).toBeGreaterThan(0);
  expect(h.calls('subscribeRoomAndAck')).toHaveLength(1);
});

// ---------------------------------------------------------------------------------------------
// Limits that count what costs (issue 9) and the join/leave decision (issue 10)

test('connection - a refresh over the send rate gets rate_limited and asks nobody', async () => {
  const h = await activeSession({ limits: { sendsPerSecond: 1, sendBurst: 1 } });
  h.send({ type: 'frame.send', id: 's', to: { user: 'bob' }, body: 'x' });
  const asked = h.verifyCalls.length;
  h.send({ type: 'frame.refresh', id: 'r', token: 'tok2' });
  expect(h.verifyCalls).toHaveLength(asked);
  expect(h.value()).toEqual(ACTIVE);
  expect(h.calls('sendError')).toEqual([
    { id: 'r', code: ErrorCode.rateLimited, message: 'too many frames', retryAfterMs: 1000 },
  ]);
  // A refresh the bucket allows takes its token.
  await h.advance(SECOND);
  h.send({ type: 'frame.refresh', id: 'r2', token: 'tok2' });
  expect(h.value()).toEqual(REFRESHING);
  expect(h.verifyCalls).toHaveLength(asked + 1);
});

test('connection - only an accepted token replaces the one held for the re-check; a refused refresh drops its own', async () => {
  const h = start({ token: 'tok' });
  const adopted = () => h.heldTokenCalls.filter((c) => c.type === 'adoptCheckedToken').map((c) => c.params);
  const dropped = () => h.heldTokenCalls.filter((c) => c.type === 'dropCheckedToken');
  await h.activate(claims(h.clock), true);
  expect(adopted()).toEqual([{ degraded: true }]);

  // Another user's valid token: refused, and what is held for the re-check stays.
  h.send({ type: 'frame.refresh', id: 'r1', token: 'bob' });
  await h.verify(ok(claims(h.clock, { sub: 'bob' })));
  expect(adopted()).toEqual([{ degraded: true }]);
  expect(dropped()).toHaveLength(1);
  expect(h.context().degraded).toBe(true);

  // Invalid and unavailable verdicts, and a verifier that fails, drop theirs too.
  for (const [id, settle] of [
    ['r2', () => h.verify({ outcome: 'invalid', reason: 'bad' })],
    ['r3', () => h.verify({ outcome: 'unavailable', reason: 'down' })],
    ['r4', () => h.failVerify(new Error('bug'))],
  ] as const) {
    h.send({ type: 'frame.refresh', id, token: 'x' });
    await settle();
  }
  expect(dropped()).toHaveLength(4);
  expect(adopted()).toHaveLength(1);

  // The same user's token, confirmed by the auth service: it replaces (clears) the held one.
  h.send({ type: 'frame.refresh', id: 'r5', token: 'tok3' });
  await h.verify(ok(claims(h.clock)));
  expect(adopted()).toEqual([{ degraded: true }, { degraded: false }]);
  expect(h.context().degraded).toBe(false);
});

test('connection - send bytes come from a byte bucket: a burst bigger than sendBytesBurst is rate_limited with a hint', async () => {
  const h = await activeSession({ limits: { sendBytesBurst: 100_000, sendBytesPerSecond: 50_000 } });
  const send = (id: number, bytes: number) => h.send({ type: 'frame.send', id, to: { user: 'bob' }, body: 'x', bytes });
  send(1, 60_000);
  send(2, 60_000);
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1]);
  // 40 000 bytes left, 60 000 wanted: 20 000 more at 50 000 a second.
  expect(h.calls('sendError')).toEqual([
    { id: 2, code: ErrorCode.rateLimited, message: 'too many sends', retryAfterMs: 400 },
  ]);
  await h.advance(400);
  send(3, 60_000);
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1, 3]);
  // Frames without a size (older recordings) take no bytes.
  h.send({ type: 'frame.send', id: 4, to: { user: 'bob' }, body: 'x' });
  expect(h.calls('publishAndAck').map((p) => (p as { id: number }).id)).toEqual([1, 3, 4]);
});

test('connection - every refused frame is a strike: forbidden, rate-limited, a second auth, a refresh in flight, a refused refresh', async () => {
  const h = await activeSession({ rooms: ['lobby'], limits: { maxStrikes: 6, maxRooms: 1, sendBurst: 100 } });
  h.send({ type: 'frame.send', id: 1, to: { room: 'lobby' }, body: 'x' }); // not joined: forbidden
  h.send({ type: 'frame.join', id: 2, room: 'secret' }); // not granted: forbidden
  h.send({ type: 'frame.leave', id: 3, room: 'secret' }); // not granted: forbidden
  h.send({ type: 'frame.auth', token: 'again' }); // already authenticated: bad_request
  h.send({ type: 'frame.refresh', id: 4, token: 'bob' });
  h.send({ type: 'frame.refresh', id: 5, token: 'x' }); // one in flight: bad_request
  expect(h.context().strikes).toBe(5);
  await h.verify(ok(claims(h.clock, { sub: 'bob' }))); // another user's: forbidden
  expect(h.context().strikes).toBe(6);
  expect(h.calls('sendError').map((e) => (e as { code: string }).code)).toEqual([
    'forbidden',
    'forbidden',
    'forbidden',
    'bad_request',
    'bad_request',
    'forbidden',
  ]);
  expect(h.value()).toEqual(ACTIVE);
  h.send({ type: 'frame.join', id: 6, room: 'secret' });
  expectClosing(h, CloseCode.policyViolation, 'too many refused frames');
});

test('connection - a refresh refused because the auth service is down is no strike', async () => {
  const h = await activeSession({ limits: { maxStrikes: 0 } });
  h.send({ type: 'frame.refresh', id: 'r', token: 'x' });
  await h.verify({ outcome: 'unavailable', reason: 'down' });
  expect(h.context().strikes).toBe(0);
  expect(h.value()).toEqual(ACTIVE);
});

test('connection - a refused refresh one strike past maxStrikes closes with 1008', async () => {
  const h = await activeSession({ limits: { maxStrikes: 0 } });
  h.send({ type: 'frame.refresh', id: 'r', token: 'x' });
  await h.verify({ outcome: 'invalid', reason: 'bad' });
  expectClosing(h, CloseCode.policyViolation, 'too many refused frames');
});

test('connection - re-joining a joined room and leaving a room not joined take from the send bucket: over the rate, rate_limited and a strike', async () => {
  const h = await activeSession({ limits: { sendsPerSecond: 1, sendBurst: 2 } });
  h.send({ type: 'frame.join', id: 1, room: 'lobby' });
  h.send({ type: 'frame.join', id: 2, room: 'lobby' }); // joined already: acked, one token
  h.send({ type: 'frame.leave', id: 3, room: 'dev' }); // granted, not joined: over the rate now
  h.send({ type: 'frame.join', id: 4, room: 'lobby' });
  expect(h.calls('sendAck')).toEqual([{ id: 2 }]);
  expect(h.calls('sendError')).toMatchObject([
    { id: 3, code: ErrorCode.rateLimited, retryAfterMs: 1000 },
    { id: 4, code: ErrorCode.rateLimited },
  ]);
  expect(h.context().strikes).toBe(2);
  await h.advance(1000);
  h.send({ type: 'frame.leave', id: 5, room: 'dev' });
  expect(h.calls('sendAck')).toEqual([{ id: 2 }, { id: 5 }]);
  expect(h.context().joined).toEqual(['lobby']);
});

test.each(['awaitingAuth', 'checkingToken', 'active'] as const)(
  'connection - pings in %s take from the send bucket: over the rate rate_limited, and one strike past maxStrikes closes with 1008',
  async (state) => {
    const h = await openStates[state]();
    const burst = h.context().limits.sendBurst;
    const maxStrikes = h.context().limits.maxStrikes;
    const before = h.calls('sendPong').length;
    for (let i = 0; i < burst + maxStrikes; i++) h.send({ type: 'frame.ping', id: i });
    // Active sessions have spent a token or none on the way in; the rest of the bucket answers.
    expect(h.calls('sendPong').length - before).toBeLessThanOrEqual(burst);
    expect(h.calls('sendError').filter((e) => (e as { code: string }).code === ErrorCode.rateLimited).length).toBeGreaterThan(0);
    for (let i = 0; i < maxStrikes + 1; i++) h.send({ type: 'frame.ping', id: `more-${i}` });
    expectClosing(h, CloseCode.policyViolation, 'too many refused frames');
  },
);

test('connection - rate-limited joins are strikes: with the defaults the 11th refused frame closes with 1008', async () => {
  const h = await activeSession({ rooms: '*', limits: { sendsPerSecond: 1, sendBurst: 1 } });
  h.send({ type: 'frame.join', id: 0, room: 'r0' });
  for (let i = 1; i <= 10; i++) h.send({ type: 'frame.join', id: i, room: `r${i}` });
  expect(h.calls('sendError')).toHaveLength(10);
  expect(h.value()).toEqual(ACTIVE);
  h.send({ type: 'frame.send', id: 'over', to: { user: 'bob' }, body: 'x' });
  expectClosing(h, CloseCode.policyViolation, 'too many refused frames');
});

test('connection - the session closes clockToleranceMs after exp, not at exp', async () => {
  const h = start({ token: 'tok', limits: { clockToleranceMs: 5000 } });
  await h.activate(claims(h.clock, { ttlMs: 60 * SECOND }));
  await h.advance(60 * SECOND);
  expect(h.value()).toEqual(EXPIRING);
  await h.advance(5 * SECOND - 1);
  expect(h.value()).toEqual(EXPIRING);
  await h.advance(1);
  expectClosing(h, CloseCode.tokenExpired, 'token expired');
});

test('connection - a token admitted within the clock tolerance after its exp is served until exp + tolerance', async () => {
  const h = start({ token: 'tok', limits: { clockToleranceMs: 5000 } });
  await h.activate(claims(h.clock, { ttlMs: -2 * SECOND }));
  await h.advance(0);
  expect(h.value()).toEqual(EXPIRING);
  expect(h.calls('sendWelcome')).toHaveLength(1);
  await h.advance(3 * SECOND);
  expectClosing(h, CloseCode.tokenExpired, 'token expired');
});

test('connection - a user over its session limit closes with 1013 too many sessions, without a welcome', async () => {
  const h = start({ token: 'tok' });
  await h.verify(ok(claims(h.clock)));
  await h.failSubscribe({ refused: 'tooManySessions' });
  expectClosing(h, CloseCode.tryAgainLater, 'too many sessions');
  expect(h.calls('sendWelcome')).toEqual([]);
});

test('connection - signals have their own bucket: past the burst rate_limited, refilled by the clock; sends unaffected', async () => {
  const h = await activeSession({ limits: { signalBurst: 2, signalsPerSecond: 4, maxStrikes: 100 } });
  for (const id of [1, 2, 3]) h.send({ type: 'frame.signal', id, to: { user: 'bob' }, body: 'typing' });
  expect(h.calls('publishSignal')).toEqual([
    { id: 1, to: { user: 'bob' }, body: 'typing' },
    { id: 2, to: { user: 'bob' }, body: 'typing' },
  ]);
  expect(h.calls('sendError')).toEqual([{ id: 3, code: ErrorCode.rateLimited, message: 'too many signals', retryAfterMs: 250 }]);
  h.send({ type: 'frame.send', id: 's', to: { user: 'bob' }, body: 'x' });
  expect(h.calls('publishAndAck')).toHaveLength(1);
  await h.advance(250);
  h.send({ type: 'frame.signal', to: { user: 'bob' }, body: 'again' });
  expect(h.calls('publishSignal').at(-1)).toEqual({ id: undefined, to: { user: 'bob' }, body: 'again' });
});

test('connection - a signal to a room needs the room joined with rw', async () => {
  const h = await activeSession({ rooms: { news: 'r', chat: 'rw' } });
  h.send({ type: 'frame.signal', id: 1, to: { room: 'chat' }, body: 1 });
  h.send({ type: 'frame.join', id: 'j1', room: 'chat' });
  h.send({ type: 'frame.join', id: 'j2', room: 'news' });
  h.send({ type: 'frame.signal', id: 2, to: { room: 'news' }, body: 2 });
  h.send({ type: 'frame.signal', id: 3, to: { room: 'chat' }, body: 3 });
  expect(h.calls('sendError').map((e) => [(e as { id: number }).id, (e as { code: string }).code])).toEqual([
    [1, 'forbidden'],
    [2, 'forbidden'],
  ]);
  expect(h.calls('publishSignal')).toEqual([{ id: 3, to: { room: 'chat' }, body: 3 }]);
  expect(h.context().strikes).toBe(2);
});

test('connection - capabilities: r joins and asks presence but may not send; "*" key and own entry; refresh applies at once', async () => {
  const h = await activeSession({ rooms: { news: 'r', '*': 'rw' } });
  h.send({ type: 'frame.join', id: 'j1', room: 'news' });
  h.send({ type: 'frame.join', id: 'j2', room: 'any' });
  h.send({ type: 'frame.send', id: 's1', to: { room: 'news' }, body: 'x' });
  h.send({ type: 'frame.send', id: 's2', to: { room: 'any' }, body: 'x' });
  h.send({ type: 'frame.presence', id: 'p1', room: 'news' });
  expect(h.calls('subscribeRoomAndAck')).toHaveLength(2);
  expect(h.calls('sendError')).toEqual([{ id: 's1', code: ErrorCode.forbidden, message: 'this token may only read this room' }]);
  expect(h.calls('publishAndAck')).toEqual([{ id: 's2', to: { room: 'any' }, body: 'x' }]);
  expect(h.calls('answerPresence')).toEqual([{ id: 'p1', room: 'news' }]);

  h.send({ type: 'frame.refresh', id: 'r1', token: 'tok2' });
  await h.verify(ok(claims(h.clock, { rooms: ['news'] })));
  h.send({ type: 'frame.send', id: 's3', to: { room: 'news' }, body: 'now' });
  expect(h.calls('publishAndAck').at(-1)).toEqual({ id: 's3', to: { room: 'news' }, body: 'now' });
  // 'any' is no longer granted: left without a frame.
  expect(h.calls('unsubscribeRooms').at(-1)).toEqual({ rooms: ['any'] });
});

test('connection - presence of a room the token does not grant is forbidden, and a strike', async () => {
  const h = await activeSession({ rooms: ['lobby'] });
  h.send({ type: 'frame.presence', id: 'p', room: 'elsewhere' });
  expect(h.calls('answerPresence')).toEqual([]);
  expect(h.calls('sendError')).toEqual([{ id: 'p', code: ErrorCode.forbidden, message: 'the token does not grant this room' }]);
  expect(h.context().strikes).toBe(1);
});

test('connection - the context keeps at most 19 fields: XState copies it on every assign, and V8 copies 20 ten times slower', async () => {
  const h = await activeSession();
  expect(Object.keys(h.context()).length).toBeLessThanOrEqual(19);
});

// Pinned by mutants that survived (issue 10): each test below fails with its mutant.

/** Every way a token check can end, from a token presented in an `auth` frame. */
const authEndings: Record<string, (h: Harness) => Promise<void>> = {
  ok: async (h) => h.verify(ok(claims(h.clock))),
  expired: async (h) => h.verify({ outcome: 'expired', reason: 'test' }),
  unavailable: async (h) => h.verify({ outcome: 'unavailable', reason: 'test' }),
  invalid: async (h) => h.verify({ outcome: 'invalid', reason: 'test' }),
  'check failed': async (h) => h.failVerify(new Error('bug')),
  'peer closed': async (h) => h.send({ type: 'socket.closed', code: CloseCode.normal }),
  'node shutdown': async (h) => h.send({ type: 'node.shutdown' }),
  'binary frame': async (h) => h.send({ type: 'frame.binary' }),
  'too many held frames': async (h) => {
    for (let i = 0; i < 40 && JSON.stringify(h.value()) === JSON.stringify(CHECKING); i++) {
      h.send({ type: 'frame.send', id: i, to: { user: 'bob' }, body: i });
    }
  },
};

for (const [ending, end] of Object.entries(authEndings)) {
  test(`connection - the raw token leaves the context when the check ends: ${ending}`, async () => {
    for (const how of ['frame', 'upgrade'] as const) {
      const h = how === 'upgrade' ? start({ token: 'raw-secret' }) : start();
      if (how === 'frame') h.send({ type: 'frame.auth', token: 'raw-secret' });
      expect(h.value()).toEqual(CHECKING);
      expect(h.context().token).toBe('raw-secret');
      await end(h);
      expect(JSON.stringify(h.value())).not.toBe(JSON.stringify(CHECKING));
      expect(h.context().token, `${ending} (${how})`).toBeUndefined();
      expect(JSON.stringify(h.actor.getSnapshot().context)).not.toContain('raw-secret');
    }
  });
}

test('connection - a send refused as forbidden still takes from the send bucket', async () => {
  const h = await activeSession({ limits: { sendBurst: 2, sendsPerSecond: 1 } });
  h.send({ type: 'frame.send', id: 1, to: { room: 'lobby' }, body: 'x' });
  h.send({ type: 'frame.send', id: 2, to: { room: 'lobby' }, body: 'x' });
  expect(h.calls('sendError').map((p) => (p as { code: string }).code)).toEqual([ErrorCode.forbidden, ErrorCode.forbidden]);
  h.send({ type: 'frame.send', id: 3, to: { user: 'bob' }, body: 'x' });
  expect(h.calls('publishAndAck')).toEqual([]);
  expect(h.calls('sendError').at(-1)).toMatchObject({ id: 3, code: ErrorCode.rateLimited });
});

test('connection - a session is not degraded until a degraded verdict says so', async () => {
  const h = start();
  expect(h.context().degraded).toBe(false);
  h.send({ type: 'frame.auth', token: 'tok' });
  await h.activate(claims(h.clock), false);
  expect(h.calls('sendWelcome')).toHaveLength(1);
  expect(h.effects.find((e) => e.type === 'sendWelcome')!.context.degraded).toBe(false);
  const d = start({ token: 'tok' });
  await d.activate(claims(d.clock), true);
  expect(d.effects.find((e) => e.type === 'sendWelcome')!.context.degraded).toBe(true);
});

test('connection - a fresh connection has no user, no rooms, nothing joined and a full send bucket', () => {
  const h = start();
  expect(h.context()).toMatchObject({
    user: undefined,
    rooms: [],
    joined: [],
    held: [],
    degraded: false,
    strikes: 0,
    buckets: { sendTokens: 100 },
  });
});

test('connection - with the default SEND_BURST a session may send 100 at once, and the 101st is rate_limited', async () => {
  const h = start({ token: 'tok' });
  await h.activate();
  for (let i = 0; i < 100; i++) h.send({ type: 'frame.send', id: i, to: { user: 'bob' }, body: i });
  expect(h.calls('publishAndAck')).toHaveLength(100);
  h.send({ type: 'frame.send', id: 100, to: { user: 'bob' }, body: 100 });
  expect(h.calls('publishAndAck')).toHaveLength(100);
  expect(h.calls('sendError').at(-1)).toMatchObject({ id: 100, code: ErrorCode.rateLimited });
});

test('connection - MAX_TIMER_MS is the longest delay a Node timer holds', () => {
  expect(MAX_TIMER_MS).toBe(2_147_483_647);
});

test('connection - without effects provided by src/, a token check fails and closes with 1011', async () => {
  const clock = new SimulatedClock();
  const actor = createActor(connectionMachine, { clock, input: { session: SESSION, token: 'tok', now: () => clock.now() } });
  const errors: unknown[] = [];
  actor.subscribe({ error: (err) => errors.push(err) });
  actor.start();
  try {
    await flush();
    expect(actor.getSnapshot().value).toBe('closing');
    expect(actor.getSnapshot().context.closeCode).toBe(CloseCode.internalError);
    expect(errors).toEqual([]);
  } finally {
    actor.stop();
  }
});

test('connection - without effects provided by src/, the user subscription fails and closes with 1013', async () => {
  const clock = new SimulatedClock();
  clock.set(T0);
  const logic = connectionMachine.provide({
    actors: { verifyToken: fromPromise<VerifyResult, { token: string; session: string }>(async () => ok(claims(clock))) },
  });
  const actor = createActor(logic, { clock, input: { session: SESSION, token: 'tok', now: () => clock.now() } });
  actor.start();
  try {
    await flush();
    await flush();
    expect(actor.getSnapshot().value).toBe('closing');
    expect(actor.getSnapshot().context).toMatchObject({ closeCode: CloseCode.tryAgainLater, closeReason: 'messaging unavailable' });
  } finally {
    actor.stop();
  }
});

test('connection - after a refresh is acked, the next refresh is checked too', async () => {
  const h = await activeSession();
  h.send({ type: 'frame.refresh', id: 'r1', token: 'tok2' });
  await h.verify(ok(claims(h.clock, { ttlMs: 2 * HOUR, rooms: ['lobby', 'dev'] })));
  h.send({ type: 'frame.refresh', id: 'r2', token: 'tok3' });
  expect(h.value()).toEqual(REFRESHING);
  await h.verify(ok(claims(h.clock, { ttlMs: 3 * HOUR, rooms: ['lobby', 'dev'] })));
  expect(h.calls('sendRefreshAck').map((p) => (p as { id: string }).id)).toEqual(['r1', 'r2']);
  expect(h.calls('sendError')).toEqual([]);
});
