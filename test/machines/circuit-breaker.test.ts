import { describe, expect, it, vi } from 'vitest';
import { createActor, fromPromise, SimulatedClock, type Actor } from 'xstate';
import {
  canCall,
  circuitBreakerMachine,
  defaultBreakerOptions,
  requestCall,
  requestTicket,
  WINDOW_BUCKETS,
  type BreakerEmitted,
  type BreakerOptions,
  type CircuitBreakerMachine,
  type FailureKind,
} from '../../machines/circuit-breaker.machine.ts';

type Breaker = Actor<CircuitBreakerMachine>;

interface StartOptions {
  /** The jitter source; 0 means no jitter, so waits are exact. */
  random?: () => number;
  /** The probe's body; by default a probe fails at once, as with the service down. */
  probe?: (signal: AbortSignal) => Promise<void>;
}

/** A breaker on a simulated clock, with every emitted event recorded. */
function start(options: Partial<BreakerOptions> = {}, { random = () => 0, probe }: StartOptions = {}) {
  const clock = new SimulatedClock();
  const probeLogic = fromPromise<void>(({ signal }) =>
    probe ? probe(signal) : Promise.reject(new Error('service down')),
  );
  const actor = createActor(circuitBreakerMachine.provide({ actors: { probe: probeLogic } }), {
    input: { now: () => clock.now(), random, options },
    clock,
  });
  const emitted: BreakerEmitted[] = [];
  actor.on('*', (event) => emitted.push(event));
  actor.start();
  return { actor, clock, emitted };
}

const state = (actor: Breaker) => actor.getSnapshot().value;
const context = (actor: Breaker) => actor.getSnapshot().context;

function succeed(actor: Breaker, durationMs = 5) {
  actor.send({ type: 'call.success', durationMs });
}
function fail(actor: Breaker, kind: FailureKind = 'error', durationMs = 5) {
  actor.send({ type: 'call.failure', kind, durationMs });
}
/** Asks, and if let through, fails the call. */
function failCalls(actor: Breaker, n: number, kind: FailureKind = 'error') {
  for (let i = 0; i < n; i += 1) {
    expect(requestCall(actor)).toBe(true);
    fail(actor, kind);
  }
}

/** Lets the promises of the probe actor settle; no time passes. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Opens the breaker (three errors in a row) and lets it wait into half-open. */
function toHalfOpen(b: ReturnType<typeof start>) {
  failCalls(b.actor, 3);
  expect(state(b.actor)).toBe('open');
  b.clock.increment(context(b.actor).openWaitMs);
  expect(b.actor.getSnapshot().matches('halfOpen')).toBe(true);
}

const types = (emitted: BreakerEmitted[]) => emitted.map((e) => e.type);

describe('circuit breaker machine', () => {
  it('breaker - starts closed and lets calls through', () => {
    const { actor } = start();
    expect(state(actor)).toBe('closed');
    expect(canCall(actor.getSnapshot())).toBe(true);
    expect(requestCall(actor)).toBe(true);
    expect(requestCall(actor)).toBe(true);
    expect(context(actor).counts.calls).toBe(2);
  });

  it('breaker - opens after three consecutive failures', () => {
    const { actor, emitted } = start();
    failCalls(actor, 2);
    expect(state(actor)).toBe('closed');
    failCalls(actor, 1);
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('consecutiveFailures');
    expect(emitted).toEqual([
      { type: 'breaker.opened', reason: 'consecutiveFailures', attempt: 1, waitMs: 1000, retryAt: 1000 },
    ]);
  });

  it('breaker - a success between failures starts the run again', () => {
    const { actor } = start({ minimumCalls: 100 }); // the rate alone would open it here
    failCalls(actor, 2);
    succeed(actor);
    failCalls(actor, 2);
    expect(state(actor)).toBe('closed');
    expect(context(actor).failureStreak).toBe(2);
  });

  it('breaker - timeouts count as failures', () => {
    const { actor } = start();
    failCalls(actor, 3, 'timeout');
    expect(state(actor)).toBe('open');
    expect(context(actor).counts.failures).toBe(3);
  });

  it('breaker - opens when the failure rate over the window reaches the threshold', () => {
    const { actor, emitted } = start({ consecutiveFailures: 100 });
    // success, failure, alternating: 2 of 5 failed is under half.
    for (const ok of [true, false, true, false, true]) {
      requestCall(actor);
      if (ok) succeed(actor);
      else fail(actor);
    }
    expect(state(actor)).toBe('closed');
    failCalls(actor, 1); // 3 of 6
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('failureRate');
    expect(emitted[0]).toMatchObject({ type: 'breaker.opened', reason: 'failureRate' });
  });

  it('breaker - the failure rate does not count before the minimum number of calls', () => {
    const { actor } = start({ consecutiveFailures: 100, minimumCalls: 5 });
    failCalls(actor, 4); // 100% failed, but only four calls
    expect(state(actor)).toBe('closed');
    failCalls(actor, 1);
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('failureRate');
  });

  it('breaker - failures still inside the window count', () => {
    const { actor, clock } = start({ consecutiveFailures: 100, windowMs: 10_000 });
    failCalls(actor, 4);
    clock.increment(9_999);
    failCalls(actor, 1);
    expect(state(actor)).toBe('open');
  });

  it('breaker - forgets failures older than the window', () => {
    const { actor, clock } = start({ consecutiveFailures: 100, windowMs: 10_000 });
    failCalls(actor, 4);
    clock.increment(10_000);
    failCalls(actor, 1);
    expect(state(actor)).toBe('closed');
    expect(context(actor).window).toEqual([{ start: 10_000, calls: 1, failures: 1 }]);
    failCalls(actor, 3);
    expect(state(actor)).toBe('closed');
    failCalls(actor, 1); // five recent failures
    expect(state(actor)).toBe('open');
  });

  it('breaker - the window holds at most ten buckets however many calls', () => {
    const { actor, clock } = start({ windowMs: 10_000 });
    for (let i = 0; i < 1000; i += 1) {
      requestCall(actor);
      succeed(actor);
      clock.increment(37);
    }
    const { window } = context(actor);
    expect(window.length).toBeLessThanOrEqual(WINDOW_BUCKETS);
    // About the last ten seconds' worth: 10_000 / 37 calls, give or take one bucket.
    const calls = window.reduce((n, b) => n + b.calls, 0);
    expect(calls).toBeGreaterThan(9_000 / 37);
    expect(calls).toBeLessThanOrEqual(Math.ceil(10_000 / 37));
  });

  it('breaker - a success slower than slowCallMs counts as a failure', () => {
    const { actor } = start({ slowCallMs: 1000 });
    requestCall(actor);
    succeed(actor, 1000); // exactly the limit is not slow
    expect(context(actor).failureStreak).toBe(0);
    for (let i = 0; i < 3; i += 1) {
      requestCall(actor);
      succeed(actor, 1001);
    }
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('consecutiveFailures');
    expect(context(actor).counts).toMatchObject({ successes: 1, failures: 3, slowCalls: 3 });
  });

  it('breaker - slow calls count toward the failure rate', () => {
    const { actor } = start({ slowCallMs: 1000, consecutiveFailures: 100 });
    for (const duration of [5, 1500, 5, 1500, 5, 1500]) {
      requestCall(actor);
      succeed(actor, duration);
    }
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('failureRate');
  });

  it('breaker - a no-responders failure opens it at once', () => {
    const { actor, emitted } = start();
    requestCall(actor);
    succeed(actor);
    failCalls(actor, 1, 'noResponders');
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('noResponders');
    expect(emitted).toEqual([expect.objectContaining({ type: 'breaker.opened', reason: 'noResponders' })]);
  });

  it('breaker - refuses calls at once while open', () => {
    const { actor } = start();
    failCalls(actor, 3);
    expect(canCall(actor.getSnapshot())).toBe(false);
    expect(requestCall(actor)).toBe(false);
    expect(requestCall(actor)).toBe(false);
    expect(context(actor).counts).toMatchObject({ calls: 3, rejections: 2 });
  });

  it('breaker - goes half-open after openBaseMs', () => {
    const { actor, clock, emitted } = start({ openBaseMs: 1000 });
    failCalls(actor, 3);
    clock.increment(999);
    expect(state(actor)).toBe('open');
    clock.increment(1);
    expect(state(actor)).toEqual({ halfOpen: 'idle' });
    expect(emitted.at(-1)).toEqual({ type: 'breaker.halfOpened', attempt: 1 });
    expect(context(actor).retryAt).toBeUndefined();
  });

  it('breaker - the open wait doubles each time it opens again, up to openMaxMs', () => {
    const b = start({ openBaseMs: 1000, openMaxMs: 5000 });
    failCalls(b.actor, 3);
    const waits: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const wait = context(b.actor).openWaitMs;
      waits.push(wait);
      expect(context(b.actor).retryAt).toBe(b.clock.now() + wait);
      b.clock.increment(wait - 1);
      expect(state(b.actor)).toBe('open');
      b.clock.increment(1);
      expect(b.actor.getSnapshot().matches('halfOpen')).toBe(true);
      failCalls(b.actor, 1); // the trial fails
      expect(state(b.actor)).toBe('open');
    }
    expect(waits).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect(
      b.emitted.filter((e) => e.type === 'breaker.opened').map((e) => [e.attempt, e.reason]),
    ).toEqual([
      [1, 'consecutiveFailures'],
      [2, 'trialFailed'],
      [3, 'trialFailed'],
      [4, 'trialFailed'],
      [5, 'trialFailed'],
      [6, 'trialFailed'],
    ]);
  });

  it('breaker - jitter from the injected random shortens the wait by up to jitterRatio', () => {
    const draws = [0.5, 0.999, 0.25];
    const b = start(
      { openBaseMs: 1000, openMaxMs: 2000, jitterRatio: 0.2 },
      { random: () => draws.shift() ?? 0 },
    );
    failCalls(b.actor, 3);
    expect(context(b.actor).openWaitMs).toBe(900); // 1000 × (1 − 0.2 × 0.5)
    b.clock.increment(899);
    expect(state(b.actor)).toBe('open');
    b.clock.increment(1);
    failCalls(b.actor, 1);
    expect(context(b.actor).openWaitMs).toBe(1600); // 2000 × (1 − 0.2 × 0.999), rounded
    b.clock.increment(1600);
    failCalls(b.actor, 1);
    // Capped at 2000 before the jitter: never above openMaxMs.
    expect(context(b.actor).openWaitMs).toBe(1900);
    expect(draws).toEqual([]);
  });

  it('breaker - half-open lets through at most halfOpenMaxCalls trial calls at a time', () => {
    const b = start({ halfOpenMaxCalls: 3, halfOpenSuccesses: 3 });
    toHalfOpen(b);
    const { actor } = b;
    expect(canCall(actor.getSnapshot())).toBe(true);
    expect([requestCall(actor), requestCall(actor), requestCall(actor)]).toEqual([true, true, true]);
    expect(canCall(actor.getSnapshot())).toBe(false);
    expect(requestCall(actor)).toBe(false);
    succeed(actor); // one answered: one slot free again
    expect(state(actor)).toEqual({ halfOpen: 'trial' });
    expect(requestCall(actor)).toBe(true);
    expect(requestCall(actor)).toBe(false);
    expect(context(actor).trialsInFlight).toBe(3);
    expect(context(actor).counts.rejections).toBe(2);
  });

  it('breaker - closes after halfOpenSuccesses successful trial calls', () => {
    const b = start({ halfOpenSuccesses: 2 });
    toHalfOpen(b);
    requestCall(b.actor);
    requestCall(b.actor);
    succeed(b.actor);
    expect(b.actor.getSnapshot().matches('halfOpen')).toBe(true);
    succeed(b.actor);
    expect(state(b.actor)).toBe('closed');
    expect(b.emitted.at(-1)).toEqual({ type: 'breaker.closed', reason: 'recovered' });
    expect(context(b.actor)).toMatchObject({ window: [], failureStreak: 0, openAttempts: 0 });
  });

  it('breaker - closing starts the backoff again from openBaseMs', () => {
    const b = start({ openBaseMs: 1000 });
    toHalfOpen(b);
    failCalls(b.actor, 1);
    expect(context(b.actor).openWaitMs).toBe(2000);
    b.clock.increment(2000);
    for (let i = 0; i < 2; i += 1) {
      requestCall(b.actor);
      succeed(b.actor);
    }
    expect(state(b.actor)).toBe('closed');
    failCalls(b.actor, 3);
    expect(context(b.actor).openWaitMs).toBe(1000);
  });

  it('breaker - one failed trial call opens it again', () => {
    const b = start({ halfOpenSuccesses: 2 });
    toHalfOpen(b);
    requestCall(b.actor);
    requestCall(b.actor);
    succeed(b.actor);
    fail(b.actor, 'timeout');
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor).tripReason).toBe('trialFailed');
    expect(context(b.actor).openAttempts).toBe(2);
  });

  it('breaker - a slow trial call opens it again', () => {
    const b = start({ slowCallMs: 1000 });
    toHalfOpen(b);
    requestCall(b.actor);
    succeed(b.actor, 1200);
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor).tripReason).toBe('trialFailed');
  });

  it('breaker - a trial call unanswered for slowCallMs opens it again', () => {
    const b = start({ slowCallMs: 1000, halfOpenSuccesses: 3 });
    toHalfOpen(b);
    requestCall(b.actor);
    requestCall(b.actor);
    b.clock.increment(600);
    succeed(b.actor); // an answer starts the timer again for the call still out
    b.clock.increment(999);
    expect(state(b.actor)).toEqual({ halfOpen: 'trial' });
    b.clock.increment(1);
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor).tripReason).toBe('trialTimedOut');
  });

  it('breaker - with no trial traffic, successful probes close it', async () => {
    let probes = 0;
    const b = start(
      { probeIntervalMs: 1000, halfOpenSuccesses: 2 },
      { probe: async () => void (probes += 1) },
    );
    toHalfOpen(b);
    b.clock.increment(999);
    expect(probes).toBe(0);
    b.clock.increment(1);
    expect(state(b.actor)).toEqual({ halfOpen: 'probing' });
    await settle();
    expect(probes).toBe(1);
    expect(state(b.actor)).toEqual({ halfOpen: 'idle' });
    b.clock.increment(1000);
    await settle();
    expect(probes).toBe(2);
    expect(state(b.actor)).toBe('closed');
    expect(b.emitted.at(-1)).toEqual({ type: 'breaker.closed', reason: 'recovered' });
    expect(context(b.actor).counts.probes).toBe(2);
  });

  it('breaker - a failed probe opens it again', async () => {
    const b = start({ probeIntervalMs: 1000 }, { probe: () => Promise.reject(new Error('down')) });
    toHalfOpen(b);
    b.clock.increment(1000);
    await settle();
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor).tripReason).toBe('probeFailed');
    expect(context(b.actor).openWaitMs).toBe(2000);
  });

  it('breaker - a probe unanswered for slowCallMs opens it again and is aborted', async () => {
    let aborted = false;
    const b = start(
      { probeIntervalMs: 1000, slowCallMs: 1000 },
      {
        probe: (signal) =>
          new Promise<void>(() => {
            signal.addEventListener('abort', () => (aborted = true));
          }),
      },
    );
    toHalfOpen(b);
    b.clock.increment(1000);
    await settle();
    expect(state(b.actor)).toEqual({ halfOpen: 'probing' });
    b.clock.increment(999);
    expect(state(b.actor)).toEqual({ halfOpen: 'probing' });
    b.clock.increment(1);
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor).tripReason).toBe('probeFailed');
    expect(aborted).toBe(true);
  });

  it('breaker - no probe runs while trial calls are out', async () => {
    let probes = 0;
    const b = start(
      { probeIntervalMs: 1000, slowCallMs: 5000 },
      { probe: async () => void (probes += 1) },
    );
    toHalfOpen(b);
    requestCall(b.actor);
    b.clock.increment(3000);
    await settle();
    expect(probes).toBe(0);
    expect(state(b.actor)).toEqual({ halfOpen: 'trial' });
  });

  it('breaker - a trial call made during a probe is let through and its report counts', () => {
    const b = start(
      { probeIntervalMs: 1000, halfOpenSuccesses: 2 },
      { probe: () => new Promise<void>(() => {}) },
    );
    toHalfOpen(b);
    b.clock.increment(1000);
    expect(state(b.actor)).toEqual({ halfOpen: 'probing' });
    expect(requestCall(b.actor)).toBe(true);
    succeed(b.actor);
    expect(state(b.actor)).toEqual({ halfOpen: 'idle' });
    expect(context(b.actor).trialSuccesses).toBe(1);
  });

  it('breaker - breaker.trip opens it by hand and breaker.reset closes it', () => {
    const { actor, emitted } = start();
    actor.send({ type: 'breaker.trip' });
    expect(state(actor)).toBe('open');
    expect(context(actor).tripReason).toBe('manual');
    actor.send({ type: 'breaker.trip' }); // already open: the wait does not start again
    expect(context(actor).openAttempts).toBe(1);
    actor.send({ type: 'breaker.reset' });
    expect(state(actor)).toBe('closed');
    expect(types(emitted)).toEqual(['breaker.opened', 'breaker.closed']);
    expect(emitted.at(-1)).toEqual({ type: 'breaker.closed', reason: 'manual' });
    expect(requestCall(actor)).toBe(true);
  });

  it('breaker - breaker.trip and breaker.reset work from half-open', () => {
    const b = start();
    toHalfOpen(b);
    b.actor.send({ type: 'breaker.trip' });
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor)).toMatchObject({ tripReason: 'manual', openAttempts: 2 });
    b.clock.increment(context(b.actor).openWaitMs);
    b.actor.send({ type: 'breaker.reset' });
    expect(state(b.actor)).toBe('closed');
    expect(context(b.actor).openAttempts).toBe(0);
  });

  it('breaker - breaker.reset while closed forgets the failures so far', () => {
    const { actor } = start();
    failCalls(actor, 2);
    actor.send({ type: 'breaker.reset' });
    failCalls(actor, 2);
    expect(state(actor)).toBe('closed');
  });

  it('breaker - emits opened, halfOpened and closed over a whole cycle', () => {
    const b = start({ openBaseMs: 1000 });
    failCalls(b.actor, 3);
    b.clock.increment(1000);
    failCalls(b.actor, 1);
    b.clock.increment(2000);
    for (let i = 0; i < 2; i += 1) {
      requestCall(b.actor);
      succeed(b.actor);
    }
    expect(b.emitted).toEqual([
      { type: 'breaker.opened', reason: 'consecutiveFailures', attempt: 1, waitMs: 1000, retryAt: 1000 },
      { type: 'breaker.halfOpened', attempt: 1 },
      { type: 'breaker.opened', reason: 'trialFailed', attempt: 2, waitMs: 2000, retryAt: 3000 },
      { type: 'breaker.halfOpened', attempt: 2 },
      { type: 'breaker.closed', reason: 'recovered' },
    ]);
    expect(context(b.actor).counts).toEqual({
      calls: 6,
      rejections: 0,
      successes: 2,
      failures: 4,
      slowCalls: 0,
      probes: 0,
      opened: 2,
      halfOpened: 2,
      closed: 1,
    });
  });

  it('breaker - reports of calls let through before it opened are counted and change nothing', () => {
    const { actor } = start();
    for (let i = 0; i < 5; i += 1) requestCall(actor);
    fail(actor, 'noResponders');
    expect(state(actor)).toBe('open');
    succeed(actor);
    fail(actor);
    succeed(actor, 5000);
    expect(state(actor)).toBe('open');
    expect(context(actor).counts).toMatchObject({ successes: 1, failures: 3, slowCalls: 1 });
  });

  it('breaker - a stopped breaker lets nothing through', () => {
    const { actor } = start();
    actor.stop();
    // XState warns about an event sent to a stopped actor; that warning is expected here.
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      expect(requestCall(actor)).toBe(false);
      expect(warn).toHaveBeenCalledOnce();
    } finally {
      warn.mockRestore();
    }
  });

  it('breaker - default options are the documented ones', () => {
    expect(defaultBreakerOptions).toEqual({
      windowMs: 10_000,
      minimumCalls: 5,
      failureRateThreshold: 0.5,
      consecutiveFailures: 3,
      slowCallMs: 1000,
      openBaseMs: 1000,
      openMaxMs: 5000,
      jitterRatio: 0.2,
      halfOpenMaxCalls: 3,
      halfOpenSuccesses: 2,
      probeIntervalMs: 1000,
    });
    expect(Object.isFrozen(defaultBreakerOptions)).toBe(true);
    expect(context(start().actor).options).toEqual(defaultBreakerOptions);
  });

  it('breaker - with the defaults and steady traffic, it opens fast and closes soon after the service returns', () => {
    // One call every 50 ms, answered at once; the service fails from 1 s to 61 s.
    const b = start({}, { random: () => 0.5 });
    const up = (t: number) => t < 1000 || t >= 61_000;
    let openedAt: number | undefined;
    let closedAt: number | undefined;
    b.actor.on('breaker.opened', () => (openedAt ??= b.clock.now()));
    b.actor.on('breaker.closed', () => (closedAt ??= b.clock.now()));
    for (let t = 0; t < 75_000; t += 50) {
      if (requestCall(b.actor)) {
        if (up(t)) succeed(b.actor);
        else fail(b.actor, 'timeout');
      }
      b.clock.increment(50);
    }
    expect(openedAt).toBeDefined();
    expect(openedAt! - 1000).toBeLessThan(200);
    expect(closedAt).toBeDefined();
    expect(closedAt! - 61_000).toBeLessThanOrEqual(defaultBreakerOptions.openMaxMs);
    expect(state(b.actor)).toBe('closed');
    // Only a handful of calls reached the dead service after it opened: one trial per wait.
    const trials = b.emitted.filter((e) => e.type === 'breaker.halfOpened').length;
    expect(context(b.actor).counts.failures).toBe(3 + trials - 1);
  });

  it('breaker - a late report of a call let through while closed is not taken for a trial', () => {
    const b = start();
    // A call granted while closed, still out when the breaker opens and goes half-open.
    const lateTicket = requestTicket(b.actor);
    expect(lateTicket).toBeDefined();
    failCalls(b.actor, 3);
    b.clock.increment(context(b.actor).openWaitMs);
    expect(b.actor.getSnapshot().matches('halfOpen')).toBe(true);
    const failures = context(b.actor).counts.failures;
    b.actor.send({ type: 'call.failure', kind: 'timeout', durationMs: 1000, generation: lateTicket });
    expect(b.actor.getSnapshot().matches('halfOpen')).toBe(true);
    expect(context(b.actor).counts.failures).toBe(failures + 1);
    expect(context(b.actor).trialsInFlight).toBe(0);
    // A late success does not count toward closing either.
    b.actor.send({ type: 'call.success', durationMs: 5, generation: lateTicket });
    expect(context(b.actor).trialSuccesses).toBe(0);
    // Real trials still decide.
    for (let i = 0; i < 2; i++) {
      const ticket = requestTicket(b.actor);
      b.actor.send({ type: 'call.success', durationMs: 5, generation: ticket });
    }
    expect(state(b.actor)).toBe('closed');
  });
});

describe('circuit breaker machine - reports carry their generation', () => {
  /** A call granted while closed, then a trip and a reset: closed again, in a later generation. */
  function lateTicketInClosed() {
    const b = start();
    const ticket = requestTicket(b.actor)!;
    b.actor.send({ type: 'breaker.trip' });
    b.actor.send({ type: 'breaker.reset' });
    expect(state(b.actor)).toBe('closed');
    return { ...b, ticket };
  }

  it('breaker - each state entered has a later generation than the one before', () => {
    const b = start();
    const seen = [context(b.actor).generation];
    failCalls(b.actor, 3); // open
    seen.push(context(b.actor).generation);
    b.clock.increment(context(b.actor).openWaitMs); // half-open
    seen.push(context(b.actor).generation);
    b.actor.send({ type: 'breaker.reset' }); // closed
    seen.push(context(b.actor).generation);
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  it('breaker - in closed, stale failures are counted but neither trip it nor join the streak', () => {
    const b = lateTicketInClosed();
    for (let i = 0; i < 5; i++) {
      b.actor.send({ type: 'call.failure', kind: 'timeout', durationMs: 5, generation: b.ticket });
    }
    expect(state(b.actor)).toBe('closed');
    expect(context(b.actor).failureStreak).toBe(0);
    expect(context(b.actor).window).toEqual([]);
    expect(context(b.actor).counts.failures).toBe(5);
    // A no-responders answer from the old generation does not open it either.
    b.actor.send({ type: 'call.failure', kind: 'noResponders', durationMs: 5, generation: b.ticket });
    expect(state(b.actor)).toBe('closed');
  });

  it('breaker - in closed, a stale success is counted but does not break the failure streak', () => {
    const b = lateTicketInClosed();
    const fresh = () => requestTicket(b.actor);
    b.actor.send({ type: 'call.failure', kind: 'error', durationMs: 5, generation: fresh() });
    b.actor.send({ type: 'call.failure', kind: 'error', durationMs: 5, generation: fresh() });
    b.actor.send({ type: 'call.success', durationMs: 5, generation: b.ticket });
    expect(context(b.actor).failureStreak).toBe(2);
    expect(context(b.actor).counts.successes).toBe(1);
    // Nor is a slow stale success a failure.
    b.actor.send({ type: 'call.success', durationMs: 60_000, generation: b.ticket });
    expect(context(b.actor).counts.slowCalls).toBe(0);
    b.actor.send({ type: 'call.failure', kind: 'error', durationMs: 5, generation: fresh() });
    expect(state(b.actor)).toBe('open');
  });

  it('breaker - a report of the current generation counts in closed', () => {
    const b = lateTicketInClosed();
    const ticket = requestTicket(b.actor);
    expect(ticket).toBe(context(b.actor).generation);
    b.actor.send({ type: 'call.failure', kind: 'error', durationMs: 5, generation: ticket });
    expect(context(b.actor).failureStreak).toBe(1);
  });

  it('breaker - a trial that succeeds frees its slot: with one back, exactly one more is let through', () => {
    const b = start({ halfOpenMaxCalls: 3, halfOpenSuccesses: 3 });
    toHalfOpen(b);
    const tickets = [requestTicket(b.actor), requestTicket(b.actor), requestTicket(b.actor)];
    expect(tickets.every((t) => t !== undefined)).toBe(true);
    expect(requestCall(b.actor)).toBe(false);
    expect(context(b.actor).trialsInFlight).toBe(3);
    b.actor.send({ type: 'call.success', durationMs: 5, generation: tickets[0] });
    expect(context(b.actor).trialsInFlight).toBe(2);
    expect(requestCall(b.actor)).toBe(true);
    expect(requestCall(b.actor)).toBe(false);
    expect(context(b.actor).trialsInFlight).toBe(3);
  });

  it('breaker - a failure older than the window no longer counts toward the rate', () => {
    // Four failures, then the window passes; four successes and one failure: 1 of 5, under 50 %.
    const b = start({ consecutiveFailures: 100, minimumCalls: 5, failureRateThreshold: 0.5, windowMs: 10_000 });
    for (let i = 0; i < 4; i++) {
      requestCall(b.actor);
      fail(b.actor);
    }
    b.clock.increment(10_001);
    for (let i = 0; i < 4; i++) {
      requestCall(b.actor);
      succeed(b.actor);
    }
    requestCall(b.actor);
    fail(b.actor);
    expect(state(b.actor)).toBe('closed');
    expect(context(b.actor).window.reduce((n, bucket) => n + bucket.calls, 0)).toBe(5);
  });
});

describe('circuit breaker machine - counts and events on every way out', () => {
  it('breaker - a fresh breaker has an empty window, no trials and no counts', () => {
    const { actor } = start();
    expect(context(actor)).toMatchObject({ window: [], failureStreak: 0, trialsInFlight: 0, trialSuccesses: 0 });
    expect(Object.values(context(actor).counts).every((n) => n === 0)).toBe(true);
  });

  it('breaker - outside half-open no trial is in flight, whatever is reported', () => {
    const b = start();
    failCalls(b.actor, 1);
    expect(context(b.actor).trialsInFlight).toBe(0);
    failCalls(b.actor, 1);
    expect(context(b.actor).trialsInFlight).toBe(0);
    succeed(b.actor);
    expect(context(b.actor).trialsInFlight).toBe(0);
    succeed(b.actor, 5000);
    expect(context(b.actor).trialsInFlight).toBe(0);
    b.actor.send({ type: 'breaker.trip' });
    fail(b.actor);
    succeed(b.actor, 5000);
    expect(state(b.actor)).toBe('open');
    expect(context(b.actor).trialsInFlight).toBe(0);
  });

  it('breaker - a slow trial is counted as a slow call and a failure', () => {
    const b = start({ slowCallMs: 1000 });
    toHalfOpen(b);
    const before = context(b.actor).counts;
    requestCall(b.actor);
    succeed(b.actor, 1200);
    expect(context(b.actor).counts).toMatchObject({ slowCalls: before.slowCalls + 1, failures: before.failures + 1, successes: before.successes });
  });

  it('breaker - a stale success in half-open is counted as a success', () => {
    const b = start();
    const late = requestTicket(b.actor);
    toHalfOpen(b);
    const successes = context(b.actor).counts.successes;
    b.actor.send({ type: 'call.success', durationMs: 5, generation: late });
    expect(context(b.actor).counts.successes).toBe(successes + 1);
  });

  it('breaker - breaker.reset from open and from half-open counts the close and emits it as manual', () => {
    const b = start();
    b.actor.send({ type: 'breaker.trip' });
    b.actor.send({ type: 'breaker.reset' });
    expect(context(b.actor).counts.closed).toBe(1);
    toHalfOpen(b);
    b.emitted.length = 0;
    b.actor.send({ type: 'breaker.reset' });
    expect(state(b.actor)).toBe('closed');
    expect(context(b.actor).counts.closed).toBe(2);
    expect(b.emitted).toEqual([{ type: 'breaker.closed', reason: 'manual' }]);
  });

  it('breaker - closing on probes counts the close and every probe success', async () => {
    const b = start({ halfOpenSuccesses: 2, probeIntervalMs: 1000 }, { probe: async () => {} });
    toHalfOpen(b);
    for (let i = 0; i < 2; i++) {
      b.clock.increment(1000);
      await settle();
    }
    expect(state(b.actor)).toBe('closed');
    expect(context(b.actor).counts).toMatchObject({ closed: 1, probes: 2 });
    expect(context(b.actor).trialSuccesses).toBe(2);
  });

  it('breaker - without a probe provided by src/, the built-in one fails and the breaker opens again', async () => {
    const clock = new SimulatedClock();
    const actor = createActor(circuitBreakerMachine, { input: { now: () => clock.now(), random: () => 0, options: {} }, clock });
    actor.start();
    try {
      actor.send({ type: 'breaker.trip' });
      clock.increment(context(actor).openWaitMs);
      expect(actor.getSnapshot().matches({ halfOpen: 'idle' })).toBe(true);
      clock.increment(defaultBreakerOptions.probeIntervalMs);
      await settle();
      expect(state(actor)).toBe('open');
      expect(context(actor).tripReason).toBe('probeFailed');
    } finally {
      actor.stop();
    }
  });
});

describe('circuit breaker machine - a clock that goes back', () => {
  it('breaker - buckets from the future are forgotten when the clock goes back', () => {
    // The breaker reads `now()` (wall-clock time), which can go back; its timers do not.
    let now = 50_000;
    const actor = createActor(circuitBreakerMachine, {
      input: { now: () => now, random: () => 0, options: { consecutiveFailures: 100 } },
      clock: new SimulatedClock(),
    });
    actor.start();
    requestCall(actor);
    fail(actor);
    expect(context(actor).window).toHaveLength(1);
    now = 20_000;
    requestCall(actor);
    succeed(actor);
    expect(context(actor).window).toEqual([{ start: 20_000, calls: 1, failures: 0 }]);
    actor.stop();
  });
});
