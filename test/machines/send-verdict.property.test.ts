/**
 * The machine and the gateway's fast path for accepted sends agree (docs/architecture.md, "The
 * fast path for accepted sends"). The fast path (src/gateway/session.ts) takes a `send` frame
 * without the actor exactly when `acceptsSendsFast(snapshot)` and `sendVerdict(...) === 'accept'`,
 * then sets the buckets to `takeSend(...)` and publishes. These properties drive the pure machine
 * with any buckets, limits, rooms, strikes and frame, in every state, and check that it does the
 * same: it publishes (and only then) when the fast path would, with the same parameters, and its
 * buckets afterwards are the fast path's.
 */
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { createActor, type StateValue } from 'xstate';
import {
  acceptsSendsFast,
  connectionMachine,
  defaultConnectionLimits,
  sendVerdict,
  takeSend,
  type Buckets,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionLimits,
  type Destination,
  type RoomGrant,
} from '../../machines/connection.machine.ts';

const T0 = Date.UTC(2025, 0, 1);
const ROOMS = ['lobby', 'dev', 'ops', 'news'] as const;

const STATES: { value: StateValue; active: boolean }[] = [
  { value: { open: 'awaitingAuth' }, active: false },
  { value: { open: { authenticating: 'checkingToken' } }, active: false },
  { value: { open: { authenticating: 'subscribing' } }, active: false },
  { value: { open: { active: { token: 'valid', refresh: 'idle' } } }, active: true },
  { value: { open: { active: { token: 'expiring', refresh: 'idle' } } }, active: true },
  { value: { open: { active: { token: 'valid', refresh: 'verifying' } } }, active: true },
  { value: { open: { active: { token: 'expiring', refresh: 'verifying' } } }, active: true },
  { value: 'closing', active: false },
];

const limitsArb: fc.Arbitrary<ConnectionLimits> = fc.record({
  sendsPerSecond: fc.integer({ min: 1, max: 100 }),
  sendBurst: fc.integer({ min: 1, max: 20 }),
  sendBytesPerSecond: fc.integer({ min: 1, max: 5000 }),
  sendBytesBurst: fc.integer({ min: 1, max: 20_000 }),
  maxStrikes: fc.integer({ min: 0, max: 5 }),
}).map((l) => ({ ...defaultConnectionLimits, ...l }));

const grantArb: fc.Arbitrary<RoomGrant> = fc.oneof(
  fc.constant('*' as const),
  fc.subarray([...ROOMS]),
  fc.dictionary(fc.constantFrom(...ROOMS, '*'), fc.constantFrom('r' as const, 'rw' as const)),
);

const destinationArb: fc.Arbitrary<Destination> = fc.oneof(
  fc.constantFrom('bob', 'alice').map((user) => ({ user })),
  fc.constantFrom(...ROOMS).map((room) => ({ room })),
);

const caseArb = fc.record({
  state: fc.constantFrom(...STATES),
  limits: limitsArb,
  rooms: grantArb,
  joined: fc.subarray([...ROOMS]),
  strikes: fc.integer({ min: 0, max: 6 }),
  // Tokens and bytes left, possibly below zero (a refill has not caught up) or above the burst.
  sendTokens: fc.double({ min: -3, max: 25, noNaN: true }),
  sendBytes: fc.double({ min: -5000, max: 25_000, noNaN: true }),
  signals: fc.double({ min: 0, max: 20, noNaN: true }),
  sinceMs: fc.integer({ min: 0, max: 5000 }),
  to: destinationArb,
  bytes: fc.option(fc.integer({ min: 0, max: 30_000 }), { nil: undefined }),
  userRetryAfterMs: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
  key: fc.option(fc.constant('k1'), { nil: undefined }),
});

type Case = typeof caseArb extends fc.Arbitrary<infer C> ? C : never;

/** The pure machine in `c.state` with `c`'s context; its effects are recorded. */
function machineIn(c: Case) {
  const now = T0 + c.sinceMs;
  const calls: { type: string; params: unknown }[] = [];
  const record = (type: string) => (_: unknown, params: unknown) => void calls.push({ type, params });
  const logic = connectionMachine.provide({
    actions: {
      publishAndAck: record('publishAndAck'),
      sendError: record('sendError'),
      closeSocket: record('closeSocket'),
      releaseInterests: record('releaseInterests'),
    },
  });
  const buckets: Buckets = { sendTokens: c.sendTokens, sendBytes: c.sendBytes, signals: c.signals, at: T0 };
  const context: ConnectionContext = {
    session: 's1',
    now: () => now,
    limits: c.limits,
    token: undefined,
    user: 'alice',
    exp: (T0 + 3_600_000) / 1000,
    rooms: c.rooms,
    joined: [...c.joined],
    degraded: false,
    jti: undefined,
    iat: undefined,
    held: [],
    since: undefined,
    refreshId: undefined,
    strikes: c.strikes,
    buckets,
    closeCode: undefined,
    closeReason: undefined,
  };
  const snapshot = logic.resolveState({ value: c.state.value, context });
  // Restored, not started from input: the input is not read.
  const actor = createActor(logic, { snapshot, input: undefined as never });
  const errors: unknown[] = [];
  actor.subscribe({ error: (err) => errors.push(err) });
  actor.start();
  return { actor, calls, now, buckets, errors };
}

const sendOf = (c: Case): Extract<ConnectionEvent, { type: 'frame.send' }> => {
  const event: Extract<ConnectionEvent, { type: 'frame.send' }> = { type: 'frame.send', id: 7, to: c.to, body: 'hi' };
  if (c.bytes !== undefined) event.bytes = c.bytes;
  if (c.userRetryAfterMs !== undefined) event.userRetryAfterMs = c.userRetryAfterMs;
  if (c.key !== undefined) event.key = c.key;
  return event;
};

test('send verdict - the machine publishes a send exactly when the fast path would, with the same buckets after', () => {
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(caseArb, (c) => {
      const m = machineIn(c);
      const before = m.actor.getSnapshot();
      const fast = acceptsSendsFast(before);
      expect(fast).toBe(c.state.active);
      const context = before.context;
      const verdict = sendVerdict(context, m.now, sendOf(c));
      const fastBuckets = takeSend(context.buckets, context.limits, m.now, c.bytes ?? 0);

      m.actor.send(sendOf(c));
      const published = m.calls.filter((call) => call.type === 'publishAndAck');
      const after = m.actor.getSnapshot();
      m.actor.stop();
      expect(m.errors).toEqual([]);

      if (fast && verdict === 'accept') {
        accepted++;
        // What the fast path does: publish once with the frame's fields, buckets as `takeSend`.
        expect(published).toEqual([{ type: 'publishAndAck', params: { id: 7, to: c.to, body: 'hi', key: c.key } }]);
        expect(after.context.buckets).toEqual(fastBuckets);
        // And nothing else: no answer, no strike, same state.
        expect(m.calls).toHaveLength(1);
        expect(after.context.strikes).toBe(c.strikes);
        expect(after.value).toEqual(c.state.value);
      } else {
        // The fast path leaves it to the machine, which does not publish it.
        refused++;
        expect(published).toEqual([]);
      }
      if (fast && verdict !== 'accept') {
        // Refused in an active state: one error or, over the strikes, the close.
        expect(m.calls.some((call) => call.type === 'sendError' || call.type === 'closeSocket')).toBe(true);
      }
    }),
    { numRuns: 2000 },
  );
  // Both sides of the verdict were tried.
  expect(accepted).toBeGreaterThan(50);
  expect(refused).toBeGreaterThan(50);
});
