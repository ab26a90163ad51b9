/**
 * A circuit breaker for calls to one downstream service (the auth service, over NATS).
 *
 *   closed → open → halfOpen → closed
 *              ↑________|          (a failed trial or probe opens it again, with a longer wait)
 *
 * - closed: every call is let through. The breaker opens when the failure rate over the last
 *   `windowMs` reaches `failureRateThreshold` (once at least `minimumCalls` calls are in the
 *   window), after `consecutiveFailures` failures in a row, or at once on a "no responders"
 *   failure (nobody is listening: no point in asking again). Timeouts count as failures, and so
 *   does a call that succeeded but took longer than `slowCallMs`.
 * - open: every call is refused at once. After a wait of `openBaseMs`, doubled each time the
 *   breaker opens again without having closed, capped at `openMaxMs` and shortened by up to
 *   `jitterRatio` at random, it goes half-open.
 * - halfOpen: at most `halfOpenMaxCalls` trial calls at a time are let through; when none come
 *   for `probeIntervalMs`, the breaker runs the `probe` actor itself. `halfOpenSuccesses`
 *   successes close it; one failure, or no answer within `slowCallMs`, opens it again.
 *
 * Asking before each call: send `call.request` and read the answer from the snapshot, or use
 * `requestCall(actor)`, which does both and returns a boolean. Every call that was let through
 * must later be reported with `call.success` or `call.failure`.
 *
 * Pure: no I/O, no clock, no randomness of its own. Time enters through the named delays and the
 * `now` function in the input, jitter through the `random` function in the input, and the health
 * probe is the `probe` actor that `src/` provides with `machine.provide(...)`, so tests drive the
 * machine with a simulated clock and a fixed `random`.
 */
import { assign, emit, setup, fromPromise, type Actor, type SnapshotFrom } from 'xstate';

/**
 * The breaker's thresholds. The defaults are tuned for the gateway's auth check: a NATS request
 * that normally answers in a few milliseconds, made for every new socket.
 *
 * Opening fast: under continuous traffic, a service that stops answering trips the breaker within
 * a few calls: at once on "no responders" (the auth service is gone), on the third failure in a
 * row otherwise, well under 2 s after it started failing. A service that hangs is seen when the
 * caller's timeouts come in; the caller should time a call out at `slowCallMs`, since a later
 * answer counts as a failure anyway, so that a hang opens the breaker about 1 s after it began.
 *
 * Closing fast: the open wait starts at 1 s and never exceeds 5 s, so the breaker half-opens at
 * most 5 s after the service came back, and two trial calls (or two probes when there is no
 * traffic) close it. Trying this often costs little: one probe or a few trial calls per wait.
 */
export interface BreakerOptions {
  /**
   * How far back the failure rate looks. Kept as ten buckets of `windowMs / 10`, so an outcome
   * is forgotten between 0.9 × and 1 × `windowMs` after it was reported. @default 10000
   */
  windowMs: number;
  /** Calls the window must hold before its failure rate can open the breaker. @default 5 */
  minimumCalls: number;
  /** Failures / calls in the window at or above which the breaker opens (0..1). @default 0.5 */
  failureRateThreshold: number;
  /**
   * Failures in a row that open the breaker whatever the rate. Three: one failure is noise, three
   * in a row of a service that answers in milliseconds is an outage. @default 3
   */
  consecutiveFailures: number;
  /**
   * A call that took longer than this counts as a failure. Also how long a half-open trial call
   * or probe may go unanswered before it counts as failed. The auth check answers in a few
   * milliseconds when healthy; a second is a sick service. @default 1000
   */
  slowCallMs: number;
  /** The first wait before half-open. Short: a restart of the auth service takes ~1 s. @default 1000 */
  openBaseMs: number;
  /**
   * The longest wait before half-open, however long the service stays down: the bound on how
   * long after its return the breaker notices. @default 5000
   */
  openMaxMs: number;
  /**
   * The wait is shortened by up to this fraction at random, so that gateway nodes opened by the
   * same outage do not all try again at the same moment. Only ever shortened, so the wait stays
   * under `openMaxMs` without clipping the draws to the cap. @default 0.2
   */
  jitterRatio: number;
  /** Trial calls let through at a time while half-open; others are refused. @default 3 */
  halfOpenMaxCalls: number;
  /** Successful trial calls or probes that close the breaker. @default 2 */
  halfOpenSuccesses: number;
  /** How long half-open waits for a trial call before it runs the probe itself. @default 1000 */
  probeIntervalMs: number;
}

export const defaultBreakerOptions: Readonly<BreakerOptions> = Object.freeze({
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

export interface BreakerInput {
  /** Milliseconds since the epoch; `Date.now` in production, a simulated clock in tests. */
  now: () => number;
  /** A number in [0, 1); `Math.random` in production, a fixed function in tests. */
  random: () => number;
  options?: Partial<BreakerOptions>;
}

/** How a call failed, as the caller reports it. */
export type FailureKind = 'timeout' | 'noResponders' | 'error';

/** Why the breaker opened, in `breaker.opened` and `context.tripReason`. */
export type TripReason =
  | 'noResponders'
  | 'consecutiveFailures'
  | 'failureRate'
  | 'trialFailed'
  | 'trialTimedOut'
  | 'probeFailed'
  | 'manual';

export type CloseReason = 'recovered' | 'manual';

export type BreakerEvent =
  /** "May I call now?" The answer is in the snapshot: see `requestCall`. */
  | { type: 'call.request' }
  /** A call that was let through answered; `durationMs` over `slowCallMs` makes it a failure. */
  | { type: 'call.success'; durationMs: number; generation?: number }
  /** A call that was let through failed; `durationMs` is for the caller's logs. */
  | { type: 'call.failure'; kind: FailureKind; durationMs: number; generation?: number }
  /** Open now, whatever the counts (an operator, or a shutdown of the service). */
  | { type: 'breaker.trip' }
  /** Close now and forget the past. */
  | { type: 'breaker.reset' };

/** Emitted on each change of state, for logs and metrics (`actor.on('breaker.opened', ...)`). */
export type BreakerEmitted =
  | {
      type: 'breaker.opened';
      reason: TripReason;
      /** Opens since the breaker was last closed, this one included. */
      attempt: number;
      waitMs: number;
      /** When the breaker goes half-open (`now()` time). */
      retryAt: number;
    }
  | { type: 'breaker.halfOpened'; attempt: number }
  | { type: 'breaker.closed'; reason: CloseReason };

/** Totals since the actor started. */
export interface BreakerCounts {
  /** Calls let through (`call.request` answered yes). */
  calls: number;
  /** Calls refused (`call.request` answered no). */
  rejections: number;
  /** `call.success` reports that were fast enough. */
  successes: number;
  /** `call.failure` reports plus slow successes. */
  failures: number;
  /** Successes slower than `slowCallMs` (also in `failures`). */
  slowCalls: number;
  /** Probes started. */
  probes: number;
  opened: number;
  halfOpened: number;
  closed: number;
}

/** Calls and failures reported in one slice of the window. */
export interface WindowBucket {
  start: number;
  calls: number;
  failures: number;
}

export interface BreakerContext {
  now: () => number;
  random: () => number;
  options: BreakerOptions;
  /** At most `WINDOW_BUCKETS` buckets, oldest first, none older than `windowMs`. */
  window: WindowBucket[];
  /** Failures since the last success. */
  failureStreak: number;
  /** Opens since the breaker was last closed; the wait grows with it. */
  openAttempts: number;
  openWaitMs: number;
  /** While open: when it goes half-open. */
  retryAt: number | undefined;
  tripReason: TripReason | undefined;
  /** While half-open: trial calls let through and not yet reported. */
  trialsInFlight: number;
  /** While half-open: successful trial calls and probes. */
  trialSuccesses: number;
  counts: BreakerCounts;
  /**
   * Changes each time a state is entered. A report that carries the generation its call was let
   * through in, and that is older, is only counted: a call granted while closed that answers
   * after the breaker went half-open is not a trial.
   */
  generation: number;
}

/**
 * The window is kept as this many buckets rather than one entry per call: the context is copied
 * on each report, so its size must not grow with the traffic.
 */
export const WINDOW_BUCKETS = 10;

/** The window with one more outcome at `at`, without the buckets that fell out of it. */
function addToWindow(
  window: readonly WindowBucket[],
  at: number,
  failed: boolean,
  windowMs: number,
): WindowBucket[] {
  const bucketMs = Math.max(1, windowMs / WINDOW_BUCKETS);
  const start = Math.floor(at / bucketMs) * bucketMs;
  // A bucket from the future means the clock went back: forget it rather than keep it forever.
  const kept = window.filter((b) => b.start > at - windowMs && b.start <= at);
  const last = kept.at(-1);
  const add = { calls: 1, failures: failed ? 1 : 0 };
  if (last?.start === start) {
    kept[kept.length - 1] = {
      start,
      calls: last.calls + add.calls,
      failures: last.failures + add.failures,
    };
  } else {
    kept.push({ start, ...add });
  }
  return kept;
}

function windowTotals(window: readonly WindowBucket[]) {
  let calls = 0;
  let failures = 0;
  for (const b of window) {
    calls += b.calls;
    failures += b.failures;
  }
  return { calls, failures };
}

/**
 * The wait before half-open after the `attempt`-th open in a row: `openBaseMs × 2^(attempt-1)`,
 * capped at `openMaxMs`, then shortened by up to `jitterRatio` (with `random` = 0 no shortening).
 */
export function openWaitFor(attempt: number, options: BreakerOptions, random: number): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 52);
  const capped = Math.min(options.openMaxMs, options.openBaseMs * 2 ** exponent);
  return Math.round(capped * (1 - options.jitterRatio * random));
}

const hasTrialSlot = (context: BreakerContext) =>
  context.trialsInFlight < context.options.halfOpenMaxCalls;

const bump = (counts: BreakerCounts, key: keyof BreakerCounts): BreakerCounts => ({
  ...counts,
  [key]: counts[key] + 1,
});

export const circuitBreakerMachine = setup({
  types: {
    context: {} as BreakerContext,
    events: {} as BreakerEvent,
    input: {} as BreakerInput,
    emitted: {} as BreakerEmitted,
  },
  actors: {
    /** One health check of the service (a NATS request); resolves if healthy, rejects if not. */
    probe: fromPromise<void>(async () => {
      throw new Error('probe is provided by src/');
    }),
  },
  delays: {
    openWait: ({ context }) => context.openWaitMs,
    probeInterval: ({ context }) => context.options.probeIntervalMs,
    /** A call unanswered for longer than `slowCallMs` would count as failed anyway. */
    callTimeout: ({ context }) => context.options.slowCallMs,
  },
  guards: {
    isStaleReport: ({ context }, p: { generation: number | undefined }) =>
      p.generation !== undefined && p.generation !== context.generation,
    isSlowCall: ({ context }, p: { durationMs: number }) =>
      p.durationMs > context.options.slowCallMs,
    isNoResponders: (_, p: { kind: FailureKind }) => p.kind === 'noResponders',
    isConsecutiveTripped: ({ context }) =>
      context.failureStreak >= context.options.consecutiveFailures,
    isFailureRateTripped: ({ context }) => {
      const { calls, failures } = windowTotals(context.window);
      return (
        calls >= context.options.minimumCalls &&
        failures / calls >= context.options.failureRateThreshold
      );
    },
    hasTrialSlot: ({ context }) => hasTrialSlot(context),
    hasTrialsInFlight: ({ context }) => context.trialsInFlight > 0,
    /** The success being handled is the last one needed to close. */
    isLastNeededSuccess: ({ context }) =>
      context.trialSuccesses + 1 >= context.options.halfOpenSuccesses,
  },
  actions: {
    grantCall: assign({ counts: ({ context }) => bump(context.counts, 'calls') }),
    grantTrial: assign(({ context }) => ({
      counts: bump(context.counts, 'calls'),
      trialsInFlight: context.trialsInFlight + 1,
    })),
    rejectCall: assign({ counts: ({ context }) => bump(context.counts, 'rejections') }),
    recordSuccess: assign(({ context }) => ({
      counts: bump(context.counts, 'successes'),
      window: addToWindow(context.window, context.now(), false, context.options.windowMs),
      failureStreak: 0,
      trialsInFlight: Math.max(0, context.trialsInFlight - 1),
      trialSuccesses: context.trialSuccesses + 1,
    })),
    recordFailure: assign(({ context }) => ({
      counts: bump(context.counts, 'failures'),
      window: addToWindow(context.window, context.now(), true, context.options.windowMs),
      failureStreak: context.failureStreak + 1,
      trialsInFlight: Math.max(0, context.trialsInFlight - 1),
    })),
    recordSlowCall: assign(({ context }) => ({
      counts: bump(bump(context.counts, 'failures'), 'slowCalls'),
      window: addToWindow(context.window, context.now(), true, context.options.windowMs),
      failureStreak: context.failureStreak + 1,
      trialsInFlight: Math.max(0, context.trialsInFlight - 1),
    })),
    recordProbeSuccess: assign({ trialSuccesses: ({ context }) => context.trialSuccesses + 1 }),
    nextGeneration: assign({ generation: ({ context }) => context.generation + 1 }),
    countStaleSuccess: assign({ counts: ({ context }) => bump(context.counts, 'successes') }),
    countStaleFailure: assign({ counts: ({ context }) => bump(context.counts, 'failures') }),
    countProbe: assign({ counts: ({ context }) => bump(context.counts, 'probes') }),
    noteTrip: assign((_, p: { reason: TripReason }) => ({ tripReason: p.reason })),
    resetWindow: assign({ window: [], failureStreak: 0 }),
    resetBackoff: assign({ openAttempts: 0, retryAt: undefined, tripReason: undefined }),
    scheduleOpenWait: assign(({ context }) => {
      const openAttempts = context.openAttempts + 1;
      const openWaitMs = openWaitFor(openAttempts, context.options, context.random());
      return {
        openAttempts,
        openWaitMs,
        retryAt: context.now() + openWaitMs,
        counts: bump(context.counts, 'opened'),
      };
    }),
    startHalfOpen: assign(({ context }) => ({
      trialsInFlight: 0,
      trialSuccesses: 0,
      retryAt: undefined,
      counts: bump(context.counts, 'halfOpened'),
    })),
    countClosed: assign({ counts: ({ context }) => bump(context.counts, 'closed') }),
    emitOpened: emit(({ context }) => ({
      type: 'breaker.opened' as const,
      reason: context.tripReason ?? 'manual',
      attempt: context.openAttempts,
      waitMs: context.openWaitMs,
      retryAt: context.retryAt ?? context.now(),
    })),
    emitHalfOpened: emit(({ context }) => ({
      type: 'breaker.halfOpened' as const,
      attempt: context.openAttempts,
    })),
    emitClosed: emit((_, p: { reason: CloseReason }) => ({
      type: 'breaker.closed' as const,
      reason: p.reason,
    })),
  },
}).createMachine({
  id: 'breaker',
  description:
    'The auth service breaker of one gateway node: lets calls through while closed, fails fast while open, tries a few calls or a probe while half-open, and closes again once they succeed.',
  context: ({ input }) => ({
    now: input.now,
    random: input.random,
    options: { ...defaultBreakerOptions, ...input.options },
    window: [],
    failureStreak: 0,
    openAttempts: 0,
    openWaitMs: 0,
    retryAt: undefined,
    tripReason: undefined,
    trialsInFlight: 0,
    trialSuccesses: 0,
    generation: 0,
    counts: {
      calls: 0,
      rejections: 0,
      successes: 0,
      failures: 0,
      slowCalls: 0,
      probes: 0,
      opened: 0,
      halfOpened: 0,
      closed: 0,
    },
  }),
  initial: 'closed',
  states: {
    closed: {
      entry: ['nextGeneration', 'resetWindow', 'resetBackoff'],
      on: {
        'call.request': { actions: 'grantCall' },
        'call.success': [
          {
            guard: { type: 'isStaleReport', params: ({ event }) => ({ generation: event.generation }) },
            actions: 'countStaleSuccess',
          },
          {
            guard: { type: 'isSlowCall', params: ({ event }) => ({ durationMs: event.durationMs }) },
            actions: 'recordSlowCall',
          },
          { actions: 'recordSuccess' },
        ],
        'call.failure': [
          {
            guard: { type: 'isStaleReport', params: ({ event }) => ({ generation: event.generation }) },
            actions: 'countStaleFailure',
          },
          {
            guard: { type: 'isNoResponders', params: ({ event }) => ({ kind: event.kind }) },
            target: 'open',
            actions: ['recordFailure', { type: 'noteTrip', params: { reason: 'noResponders' } }],
          },
          { actions: 'recordFailure' },
        ],
        'breaker.trip': {
          target: 'open',
          actions: { type: 'noteTrip', params: { reason: 'manual' } },
        },
        'breaker.reset': { actions: 'resetWindow' },
      },
      // Checked after each report above has been recorded (and after nothing else changes them).
      always: [
        {
          guard: 'isConsecutiveTripped',
          target: 'open',
          actions: { type: 'noteTrip', params: { reason: 'consecutiveFailures' } },
        },
        {
          guard: 'isFailureRateTripped',
          target: 'open',
          actions: { type: 'noteTrip', params: { reason: 'failureRate' } },
        },
      ],
    },
    open: {
      entry: ['nextGeneration', 'scheduleOpenWait', 'emitOpened'],
      after: { openWait: 'halfOpen' },
      on: {
        'call.request': { actions: 'rejectCall' },
        // Reports of calls let through before the breaker opened: counted, nothing more.
        'call.success': [
          {
            guard: { type: 'isSlowCall', params: ({ event }) => ({ durationMs: event.durationMs }) },
            actions: 'recordSlowCall',
          },
          { actions: 'recordSuccess' },
        ],
        'call.failure': { actions: 'recordFailure' },
        'breaker.reset': {
          target: 'closed',
          actions: ['countClosed', { type: 'emitClosed', params: { reason: 'manual' } }],
        },
      },
    },
    halfOpen: {
      entry: ['nextGeneration', 'startHalfOpen', 'emitHalfOpened'],
      initial: 'idle',
      on: {
        'call.request': [{ guard: 'hasTrialSlot', actions: 'grantTrial' }, { actions: 'rejectCall' }],
        'call.success': [
          {
            guard: { type: 'isStaleReport', params: ({ event }) => ({ generation: event.generation }) },
            actions: 'countStaleSuccess',
          },
          {
            guard: { type: 'isSlowCall', params: ({ event }) => ({ durationMs: event.durationMs }) },
            target: 'open',
            actions: ['recordSlowCall', { type: 'noteTrip', params: { reason: 'trialFailed' } }],
          },
          {
            guard: 'isLastNeededSuccess',
            target: 'closed',
            actions: [
              'recordSuccess',
              'countClosed',
              { type: 'emitClosed', params: { reason: 'recovered' } },
            ],
          },
          // Back through idle, so that the trial timer starts again for the calls still out.
          { target: '.idle', actions: 'recordSuccess' },
        ],
        'call.failure': [
          {
            guard: { type: 'isStaleReport', params: ({ event }) => ({ generation: event.generation }) },
            actions: 'countStaleFailure',
          },
          {
            target: 'open',
            actions: ['recordFailure', { type: 'noteTrip', params: { reason: 'trialFailed' } }],
          },
        ],
        'breaker.trip': {
          target: 'open',
          actions: { type: 'noteTrip', params: { reason: 'manual' } },
        },
        'breaker.reset': {
          target: 'closed',
          actions: ['countClosed', { type: 'emitClosed', params: { reason: 'manual' } }],
        },
      },
      states: {
        /** No trial call out: wait for one, and probe if none comes. */
        idle: {
          always: { guard: 'hasTrialsInFlight', target: 'trial' },
          after: { probeInterval: 'probing' },
        },
        /** Trial calls out: one of them must answer within `callTimeout`. */
        trial: {
          after: {
            callTimeout: {
              target: '#breaker.open',
              actions: { type: 'noteTrip', params: { reason: 'trialTimedOut' } },
            },
          },
        },
        /** Trial calls that come meanwhile are let through; their reports end the probe. */
        probing: {
          entry: 'countProbe',
          invoke: {
            src: 'probe',
            onDone: [
              {
                guard: 'isLastNeededSuccess',
                target: '#breaker.closed',
                actions: [
                  'recordProbeSuccess',
                  'countClosed',
                  { type: 'emitClosed', params: { reason: 'recovered' } },
                ],
              },
              { target: 'idle', actions: 'recordProbeSuccess' },
            ],
            onError: {
              target: '#breaker.open',
              actions: { type: 'noteTrip', params: { reason: 'probeFailed' } },
            },
          },
          after: {
            callTimeout: {
              target: '#breaker.open',
              actions: { type: 'noteTrip', params: { reason: 'probeFailed' } },
            },
          },
        },
      },
    },
  },
});

export type CircuitBreakerMachine = typeof circuitBreakerMachine;
export type BreakerSnapshot = SnapshotFrom<CircuitBreakerMachine>;

/**
 * Whether a call would be let through now, without asking for it: closed, or half-open with a
 * trial slot free. For status pages; before a real call use `requestCall`, which takes the slot.
 */
export function canCall(snapshot: BreakerSnapshot): boolean {
  if (snapshot.matches('closed')) return true;
  return snapshot.matches('halfOpen') && hasTrialSlot(snapshot.context);
}

/**
 * Asks the breaker whether a call may be made now, synchronously: sends `call.request` and
 * returns true if the call was let through (and then it must be reported with `call.success` or
 * `call.failure`). A stopped breaker lets nothing through. Not to be called from inside the
 * breaker's own actions, where the event would only be queued.
 */
export function requestCall(actor: Actor<CircuitBreakerMachine>): boolean {
  return requestTicket(actor) !== undefined;
}

/**
 * Like `requestCall`, but returns the generation the call was let through in (or undefined when
 * refused); pass it back as `generation` in the report so a late answer is not taken for a trial.
 */
export function requestTicket(actor: Actor<CircuitBreakerMachine>): number | undefined {
  const before = actor.getSnapshot().context.counts.calls;
  actor.send({ type: 'call.request' });
  const after = actor.getSnapshot().context;
  return after.counts.calls > before ? after.generation : undefined;
}
