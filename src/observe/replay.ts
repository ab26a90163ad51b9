/**
 * Replaying a recording (src/observe/recording.ts) through a machine, deterministically, under a
 * simulated clock (a `SimulatedClock` that fires each timer when the recording says it fired):
 *
 * - Before each recorded event the clock moves to the event's offset `t`, and the machine's `now()`
 *   is the recorded wall-clock start plus that offset, so guards that read the clock decide as they
 *   did.
 * - Timers are the machine's own: it arms them (`xstate.raise` with a `delay`, compared with the
 *   recorded one), and a recorded `xstate.after.*` event (or any event the machine scheduled for
 *   itself) is never sent. There the replay fires its timer that is due first, at the recorded time,
 *   and checks that it is the recorded one. A real timer fires late, never early, on a busy event
 *   loop, and events may come in meanwhile: so a timer fires where the recording has it, and not as
 *   soon as it is due. It may be due up to `toleranceMs` after the recorded time (the recording
 *   measures with another clock than `Date.now`); a timer due later, or none, is a divergence.
 *   Events the machine raises without a delay never appear as events, in the recording or here.
 * - Invoked actors (the token check, the user's subscription, the breaker's probe) are stubs
 *   that never finish; their recorded `xstate.done.actor.<id>` / `xstate.error.actor.<id>` event
 *   is sent to the root actor, which handles it as if the child had finished (XState v5 matches
 *   `onDone`/`onError` by the event type alone; the stub is stopped as the state exits).
 * - A recorded state with no event before it is the actor being stopped: the replay stops too.
 *
 * Each event, effect and state the replayed actor lives is compared with the recording, in order;
 * the first difference is the divergence. Times that the machine derives from its clock (a
 * delay, `retryAfterMs`, `retryAt`) may differ by `toleranceMs`.
 */
import {
  createActor,
  fromCallback,
  SimulatedClock,
  type AnyEventObject,
  type AnyStateMachine,
  type StateValue,
} from 'xstate';
import { connectionMachine } from '../../machines/connection.machine.ts';
import { clientMachine } from '../../machines/client.machine.ts';
import {
  circuitBreakerMachine,
  defaultBreakerOptions,
  openWaitFor,
  type BreakerOptions,
} from '../../machines/circuit-breaker.machine.ts';
import { recordedForm, type Observation, type ObservedMachine } from './observe.ts';
import {
  parseRecordings,
  RecordingFormatError,
  type Recording,
  type RecordingHeader,
} from './recording.ts';

/** The machine of each kind of recording. */
export const recordedMachines: Record<ObservedMachine, AnyStateMachine> = {
  connection: connectionMachine,
  breaker: circuitBreakerMachine,
  client: clientMachine,
};

export interface ReplayOptions {
  /**
   * How far apart recorded and replayed times may be: how much later than recorded a timer may
   * be due, and how much times the machine computes (delays, `retryAfterMs`) may differ. @default 100
   */
  toleranceMs?: number;
}

/** One thing an actor lived: an event it received, an effect it asked for, or the state it reached. */
export interface ReplayStep {
  /** Its index among the recording's observations (the same in both while they match). */
  index: number;
  /** Milliseconds since the actor started: recorded, or on the simulated clock. */
  t: number;
  kind: 'event' | 'state' | 'action';
  event?: AnyEventObject;
  state?: StateValue;
  action?: { type: string; params?: unknown };
}

export interface Divergence {
  /**
   * Index of the first recorded observation that the replay did not reproduce, or the number of
   * observations when the replay did more than was recorded.
   */
  index: number;
  /** The recorded offset there (ms), or the replay's when it did more. */
  t: number;
  /** What was recorded at `index`; undefined when the replay did more. */
  expected: ReplayStep | undefined;
  /** What the replay did instead; undefined when it did nothing. */
  actual: ReplayStep | undefined;
  reason: string;
}

export interface ReplayResult {
  header: RecordingHeader;
  matches: boolean;
  /** Everything the replayed actor lived, in order, up to and including the divergence. */
  steps: ReplayStep[];
  /** The states it reached, in order. */
  states: StateValue[];
  /** The effects (actions) it asked for, in order. */
  effects: Array<{ type: string; params?: unknown }>;
  /** The first point where the replay differs from the recording. */
  divergence?: Divergence;
}

export const DEFAULT_TOLERANCE_MS = 100;

/** Parameters that the machines compute from their clock: compared within `toleranceMs`. */
const TIME_KEYS = new Set(['delay', 'retryAfterMs', 'retryAt']);

/**
 * A `SimulatedClock` whose timers fire only when asked. `SimulatedClock.set` fires whatever is due,
 * at the new time; that cannot replay a timer that fired late, after other events came in.
 */
class ReplayClock extends SimulatedClock {
  readonly #timers = new Map<number, { due: number; fn: () => void }>();
  #lastId = 0;

  override setTimeout(fn: (...args: unknown[]) => void, timeout: number): number {
    const id = ++this.#lastId;
    this.#timers.set(id, { due: this.now() + timeout, fn });
    return id;
  }

  override clearTimeout(id: number): void {
    this.#timers.delete(id);
  }

  /** Moves time on; fires nothing. */
  moveTo(time: number): void {
    if (time > this.now()) this.set(time);
  }

  /** The timer due first (the one armed first among those due together). */
  next(): { id: number; due: number } | undefined {
    let next: { id: number; due: number } | undefined;
    for (const [id, { due }] of this.#timers) if (!next || due < next.due) next = { id, due };
    return next;
  }

  fire(id: number): void {
    const timer = this.#timers.get(id);
    if (!timer) return;
    this.#timers.delete(id);
    timer.fn();
  }
}

/** What replay must know about a machine beyond its definition. */
interface Profile {
  /** The machine's `random` input: draws are not recorded, so they are read back from effects. */
  random?: (header: RecordingHeader, observations: readonly Observation[], from: number) => number;
}

const profiles: Partial<Record<ObservedMachine, Profile>> = {
  client: {
    // The client draws once per reconnect, for its backoff; `announceReconnect` records the draw.
    random(_header, observations, from) {
      for (let k = from; k < observations.length; k++) {
        const action = observations[k]!.action;
        if (action?.type === 'announceReconnect') return (action.params as { jitter?: number }).jitter ?? 0;
      }
      return 0;
    },
  },
  breaker: {
    // The breaker draws once per open, for the jitter of its wait; `breaker.opened` says the wait.
    random(header, observations, from) {
      const options: BreakerOptions = { ...defaultBreakerOptions, ...(header.input.options as Partial<BreakerOptions>) };
      for (let k = from; k < observations.length; k++) {
        const params = observations[k]!.action?.params as { event?: { type?: string; attempt?: number; waitMs?: number } } | undefined;
        const opened = observations[k]!.action?.type === 'xstate.emit' ? params?.event : undefined;
        if (opened?.type !== 'breaker.opened' || opened.attempt === undefined || opened.waitMs === undefined) continue;
        const full = openWaitFor(opened.attempt, options, 0);
        if (options.jitterRatio <= 0 || full <= 0) return 0;
        return Math.min(Math.max((1 - opened.waitMs / full) / options.jitterRatio, 0), 1 - Number.EPSILON);
      }
      return 0;
    },
  },
};

/** Deep equality of plain JSON values; numbers under `TIME_KEYS` within `tolerance`. */
function equal(a: unknown, b: unknown, tolerance: number, key?: string): boolean {
  if (typeof a === 'number' && typeof b === 'number' && key !== undefined && TIME_KEYS.has(key)) {
    return Math.abs(a - b) <= tolerance;
  }
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], tolerance, Array.isArray(a) ? key : k),
  );
}

/** Why `actual` is not what was `expected`, or undefined when it is. */
function difference(expected: ReplayStep, actual: ReplayStep, tolerance: number): string | undefined {
  if (expected.kind !== actual.kind) return `expected ${expected.kind === 'action' ? 'an effect' : `a ${expected.kind}`}, the replay had ${actual.kind === 'action' ? 'an effect' : `a ${actual.kind}`}`;
  switch (expected.kind) {
    case 'event':
      return equal(expected.event, actual.event, tolerance) ? undefined : 'a different event';
    case 'state':
      return equal(expected.state, actual.state, tolerance) ? undefined : 'a different state';
    case 'action':
      if (expected.action?.type !== actual.action?.type) return 'a different effect';
      return equal(expected.action?.params, actual.action?.params, tolerance)
        ? undefined
        : 'the same effect with different parameters';
  }
}

const childOf = (type: string) => /^xstate\.(?:done|error)\.actor\.(.+)$/.exec(type)?.[1];

/** The recording of `machine` in JSON-lines text: the first one whose header names it. */
function recordingFor(machine: AnyStateMachine, text: string): Recording {
  const found = parseRecordings(text).recordings.find((r) => r.header.machine === machine.id);
  if (!found) throw new RecordingFormatError(`no recording of machine ${machine.id}`);
  return found;
}

/**
 * Re-runs `recording` through `machine` under a simulated clock and compares, step by step,
 * what the machine lives with what was recorded. See the module comment.
 */
export function replay(machine: AnyStateMachine, recording: Recording | string, options: ReplayOptions = {}): ReplayResult {
  const { header, observations } = typeof recording === 'string' ? recordingFor(machine, recording) : recording;
  if (header.machine !== machine.id) {
    throw new RecordingFormatError(`the recording is of machine ${header.machine}, not ${machine.id}`);
  }
  const tolerance = options.toleranceMs ?? DEFAULT_TOLERANCE_MS;
  const clock = new ReplayClock();
  const steps: ReplayStep[] = [];
  /** Events the machine scheduled for itself with a delay, by id: they must fire, not be sent. */
  const delayed = new Map<string, string>();
  const raw = !header.redacted;
  let cursor = 0;
  let failure: unknown;

  const profile = profiles[header.machine] ?? {};
  const stubs = Object.fromEntries(
    Object.keys(machine.implementations.actors).map((name) => [name, fromCallback(() => {})]),
  );
  const logic = machine.provide({ actors: stubs, delays: header.delays ?? {} });
  const actor = createActor(logic, {
    clock,
    input: {
      ...header.input,
      now: () => header.startedAt + clock.now(),
      random: () => profile.random?.(header, observations, cursor) ?? 0,
    },
    inspect: (ev) => {
      if (ev.actorRef.sessionId !== ev.rootId) return;
      const step = { index: steps.length, t: clock.now() };
      if (ev.type === '@xstate.event') {
        if (ev.event.type === 'xstate.init') return;
        for (const [id, type] of delayed) {
          if (type === ev.event.type) {
            delayed.delete(id);
            break;
          }
        }
        steps.push(recordedForm({ ...step, kind: 'event', event: ev.event }, raw));
      } else if (ev.type === '@xstate.snapshot') {
        steps.push(recordedForm({ ...step, kind: 'state', state: (ev.snapshot as { value?: StateValue }).value! }, raw));
      } else if (ev.type === '@xstate.action') {
        const recorded = recordedForm({ ...step, kind: 'action', action: ev.action }, raw);
        const action = recorded.action as { type: string; params?: Record<string, unknown> };
        const params = action.params ?? {};
        if (action.type === 'xstate.raise' && params.delay !== undefined && typeof params.id === 'string') {
          delayed.set(params.id, (params.event as AnyEventObject).type);
        }
        if (action.type === 'xstate.cancel' && typeof params.sendId === 'string') delayed.delete(params.sendId);
        steps.push(recorded);
      }
    },
  });
  actor.subscribe({
    error: (err) => {
      failure = err;
    },
  });

  /** Makes the replay do what woke the recorded actor at `r`; returns why it cannot. */
  const deliver = (r: Observation): string | undefined => {
    if (r.kind === 'action') return 'the recording has an effect here, but the replay was waiting for an event';
    clock.moveTo(r.t);
    // A state that no event caused: the recorded actor was stopped.
    if (r.kind === 'state') return void actor.stop();
    const event = r.event as AnyEventObject;
    if (event.type.startsWith('xstate.after.') || [...delayed.values()].includes(event.type)) {
      const timer = clock.next();
      if (!timer) return `the recording has ${event.type} fire here; the replay has no timer armed`;
      if (timer.due > r.t + tolerance) {
        return `the recording has ${event.type} fire here; the replay's first timer is due at ${timer.due.toFixed(1)} ms`;
      }
      clock.moveTo(timer.due);
      clock.fire(timer.id);
      return undefined;
    }
    const child = childOf(event.type);
    if (child !== undefined && !(child in (actor.getSnapshot() as { children: object }).children)) {
      return `the recording has the invoked actor ${child} finish here; the replay is not running it`;
    }
    actor.send(event);
    return undefined;
  };

  actor.start();
  // The replay's steps and the recording's observations go in step: `steps[i]` is compared with
  // `observations[i]`. When the replay has nothing left to compare, the recording says what woke it.
  let divergence: Divergence | undefined;
  for (let i = 0; i < observations.length && !divergence; i++) {
    cursor = i;
    const r = observations[i]!;
    const expected: ReplayStep = { ...r, index: i };
    let reason = i >= steps.length ? deliver(r) : undefined;
    if (failure !== undefined) reason = `the machine failed: ${(failure as Error).message ?? String(failure)}`;
    const actual = steps[i];
    if (reason === undefined && actual === undefined) reason = 'the replay did nothing here';
    reason ??= difference(expected, actual!, tolerance);
    if (reason !== undefined) divergence = { index: i, t: r.t, expected, actual, reason };
  }
  if (!divergence && observations.length < steps.length) {
    const actual = steps[observations.length]!;
    divergence = { index: observations.length, t: actual.t, expected: undefined, actual, reason: 'the replay did more than was recorded' };
  }
  const lived = steps.slice(0, divergence ? divergence.index + 1 : steps.length);
  if (actor.getSnapshot().status === 'active') actor.stop();
  return {
    header,
    matches: divergence === undefined,
    steps: lived,
    states: lived.filter((s) => s.kind === 'state').map((s) => s.state!),
    effects: lived.filter((s) => s.kind === 'action').map((s) => s.action!),
    ...(divergence ? { divergence } : {}),
  };
}

/** `open.active(token.valid, refresh.idle)` for `{ open: { active: { token: 'valid', refresh: 'idle' } } }`. */
export function formatState(value: StateValue | undefined): string {
  if (value === undefined) return '?';
  if (typeof value === 'string') return value;
  const parts = Object.entries(value).map(([k, v]) => {
    if (v === undefined) return k;
    const inner = formatState(v as StateValue);
    return typeof v === 'object' && Object.keys(v).length > 1 ? `${k}(${inner})` : `${k}.${inner}`;
  });
  return parts.join(', ');
}

const MAX_DETAIL = 160;

function formatStep(step: ReplayStep | undefined): string {
  if (!step) return 'nothing';
  const detail = (value: unknown) => {
    if (value === undefined) return '';
    const json = JSON.stringify(value);
    return ` ${json.length > MAX_DETAIL ? `${json.slice(0, MAX_DETAIL - 1)}…` : json}`;
  };
  switch (step.kind) {
    case 'state':
      return `state  ${formatState(step.state)}`;
    case 'event': {
      const { type, ...rest } = step.event ?? { type: '?' };
      return `event  ${type}${Object.keys(rest).length ? detail(rest) : ''}`;
    }
    case 'action':
      return `effect ${step.action?.type}${detail(step.action?.params)}`;
  }
}

/** What `chatgate replay` prints for one recording. */
export function formatReplay(result: ReplayResult): string {
  const { header } = result;
  const who = header.machine === 'breaker' ? 'breaker' : `${header.machine} ${header.session ?? '?'}`;
  const lines = [
    `${who} on ${header.node}, recorded ${header.started} by chatgate ${header.version}${header.redacted ? '' : ' (raw)'}`,
  ];
  for (const step of result.steps) {
    if (step === result.divergence?.actual) break;
    lines.push(`  #${String(step.index).padEnd(4)} ${step.t.toFixed(1).padStart(10)} ms  ${formatStep(step)}`);
  }
  const d = result.divergence;
  if (!d) {
    lines.push(`MATCHES: ${result.steps.length} steps, ${result.states.length} states, ${result.effects.length} effects`);
  } else {
    lines.push(`DIVERGES at #${d.index} (t=${d.t.toFixed(1)} ms): ${d.reason}`);
    lines.push(`  expected: ${formatStep(d.expected)}`);
    lines.push(`  replay:   ${formatStep(d.actual)}`);
  }
  return `${lines.join('\n')}\n\n`;
}
