/**
 * Seeing what the machines live through, as it happens: every event a connection actor or the
 * auth breaker receives, each state it enters and each effect it asks for, with its time offset
 * from the actor's start. The inspector page and the recorder listen here; nothing is collected
 * while nobody listens. Tokens and message bodies are redacted unless a listener asks otherwise.
 *
 * This runs inside XState's inspection, where a throw is not caught by the actor and would reach
 * the process: copies are depth-bounded, and nothing a listener or a copy throws leaves here
 * (it is one bounded log line instead).
 */
import type { AnyEventObject, InspectionEvent, StateValue } from 'xstate';
import { errorSummary, limitedLog, type LimitedLog } from '../bounded-log.ts';
import { silentLogger, type Logger } from '../log.ts';
import { REDACTED, SECRET_FIELDS } from '../redact.ts';

export type ObservedMachine = 'connection' | 'breaker' | 'client';

export interface Observation {
  machine: ObservedMachine;
  node: string;
  /** The connection's session id; absent for the breaker. */
  session?: string;
  /** The user, once the session knows it. */
  user?: string;
  /** Milliseconds since the actor started. */
  t: number;
  kind: 'event' | 'state' | 'action';
  event?: AnyEventObject;
  state?: StateValue;
  action?: { type: string; params?: unknown };
}

const SECRET_KEYS: ReadonlySet<string> = new Set(SECRET_FIELDS);
export { REDACTED };
/** What stands for a value nested deeper than `MAX_COPY_DEPTH`. */
export const TOO_DEEP = '[too deep]';
/**
 * Levels of objects and arrays that `redact` copies. Above the protocol's limit on a body (32,
 * src/gateway/codec.ts) plus the event or action around it, so that nothing a client may send is cut.
 */
export const MAX_COPY_DEPTH = 64;

/**
 * A plain JSON-safe copy of `value` with every `token` and `body` field replaced, at any depth.
 * Only plain objects and arrays are followed: anything else that is an object (an actor
 * reference in a spawn or stop action, which points back at itself) becomes a short label, and a
 * cycle is cut. Below `MAX_COPY_DEPTH` levels a value becomes `[too deep]`, so the copy's own
 * recursion stays shallow whatever it is given.
 */
export function redact<T>(value: T, keep = false): T {
  const seen = new WeakSet<object>();
  const copy = (v: unknown, depth: number): unknown => {
    if (v === null || typeof v !== 'object') return typeof v === 'function' ? '[function]' : v;
    if (depth > MAX_COPY_DEPTH) return TOO_DEEP;
    if (seen.has(v)) return '[cycle]';
    const proto = Object.getPrototypeOf(v);
    if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) {
      const id = (v as { id?: unknown }).id;
      return typeof id === 'string' ? `[${id}]` : '[object]';
    }
    seen.add(v);
    if (Array.isArray(v)) return v.map((item) => copy(item, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(v)) {
      out[key] = !keep && SECRET_KEYS.has(key) && item !== undefined ? REDACTED : copy(item, depth + 1);
    }
    return out;
  };
  return copy(value, 1) as T;
}

/** A value as plain JSON (what a recording line holds): undefined fields left out. */
export function toPlain<T>(value: T): T {
  const json = JSON.stringify(value);
  return json === undefined ? value : (JSON.parse(json) as T);
}

/*
 * The two forms an observation leaves the process in. Both keep the state value whole: it holds a
 * machine's state names, never data, and one region of the connection machine is named `token`.
 */

/**
 * An observation as it is recorded, and as replay compares it: its event and action copied by
 * `redact` (actor references become `[id]`; tokens and bodies `[redacted]` unless `raw`), then
 * plain JSON.
 */
export function recordedForm<T extends Partial<Observation>>(o: T, raw: boolean): T {
  return toPlain({
    ...o,
    ...(o.event === undefined ? {} : { event: redact(o.event, raw) }),
    ...(o.action === undefined ? {} : { action: redact(o.action, raw) }),
  });
}

/**
 * An observation as the inspector page gets it: first plain JSON (an action's params may hold
 * actor refs, which refer to themselves; JSON keeps their `toJSON` form; an Error keeps its name
 * and message), then its event and action redacted.
 */
export function pageForm(o: Observation): Observation {
  const plain = JSON.parse(
    JSON.stringify(o, (_key, v: unknown) => (v instanceof Error ? { name: v.name, message: v.message } : v)),
  ) as Observation;
  return { ...plain, event: redact(plain.event), action: redact(plain.action) };
}

export interface ObserverFilter {
  machine?: ObservedMachine;
  session?: string;
  user?: string;
}

export interface Listener {
  filter: ObserverFilter;
  /** Keep tokens and bodies (local debugging only). @default false */
  raw?: boolean;
  receive(o: Observation): void;
}

function matches(filter: ObserverFilter, o: Observation): boolean {
  if (filter.machine && filter.machine !== o.machine) return false;
  if (filter.session && filter.session !== o.session) return false;
  if (filter.user && filter.user !== o.user) return false;
  return true;
}

export interface ObserversOptions {
  /** Where a failed observation is logged (one bounded line). @default silent */
  log?: Logger;
}

export class Observers {
  readonly #listeners = new Set<Listener>();
  readonly #activity = new Set<(active: boolean) => void>();
  readonly #failed: LimitedLog;

  constructor(options: ObserversOptions = {}) {
    this.#failed = limitedLog(options.log ?? silentLogger);
  }

  get active(): boolean {
    return this.#listeners.size > 0;
  }

  /** Starts listening; returns the function that stops it. */
  listen(listener: Listener): () => void {
    const wasActive = this.active;
    this.#listeners.add(listener);
    if (!wasActive) this.#activityChanged(true);
    return () => {
      if (this.#listeners.delete(listener) && !this.active) this.#activityChanged(false);
    };
  }

  /**
   * Calls `fn(true)` when the first listener comes and `fn(false)` when the last one goes: a node
   * inspects its connection actors only while someone listens (src/gateway/actor-shards.ts).
   */
  onActivity(fn: (active: boolean) => void): () => void {
    this.#activity.add(fn);
    return () => this.#activity.delete(fn);
  }

  #activityChanged(active: boolean): void {
    for (const fn of this.#activity) fn(active);
  }

  emit(o: Observation): void {
    let redacted: Observation | undefined;
    let plain: Observation | undefined;
    for (const listener of this.#listeners) {
      if (!matches(listener.filter, o)) continue;
      // One listener that fails misses this observation; the others still get it.
      try {
        // State values are never secret (a region may be called `token`); events and actions may be.
        if (listener.raw) listener.receive((plain ??= { ...o, event: redact(o.event, true), action: redact(o.action, true) }));
        else listener.receive((redacted ??= { ...o, event: redact(o.event), action: redact(o.action) }));
      } catch (err) {
        this.#failed('error', { machine: o.machine, kind: o.kind, error: errorSummary(err) }, 'observation failed');
      }
    }
  }

  /**
   * The `inspect` option for one root actor: its own events, states and actions (not its
   * children's) become observations.
   */
  inspector(meta: { machine: ObservedMachine; node: string; session?: string }, user: () => string | undefined) {
    const startedAt = performance.now();
    return (ev: InspectionEvent) => {
      if (ev.actorRef.sessionId !== ev.rootId) return;
      this.observe(ev, meta, user, startedAt);
    };
  }

  /**
   * One inspection event of the actor `meta` names, started at `startedAt` (`performance.now()`),
   * as an observation: for actors that share a system, whose inspection the caller routes.
   */
  observe(
    ev: InspectionEvent,
    meta: { machine: ObservedMachine; node: string; session?: string },
    user: () => string | undefined,
    startedAt: number,
  ): void {
    if (this.#listeners.size === 0) return;
    // XState does not catch what its inspection throws: nothing may leave this function.
    try {
      const base = () => ({ ...meta, user: user(), t: Math.round((performance.now() - startedAt) * 1000) / 1000 });
      switch (ev.type) {
        case '@xstate.event':
          // `xstate.init` and events the actor sends itself are part of the machine, not input.
          if (ev.event.type !== 'xstate.init') this.emit({ ...base(), kind: 'event', event: ev.event });
          break;
        case '@xstate.snapshot':
          this.emit({ ...base(), kind: 'state', state: (ev.snapshot as { value?: StateValue }).value });
          break;
        case '@xstate.action':
          this.emit({ ...base(), kind: 'action', action: ev.action });
          break;
      }
    } catch (err) {
      this.#failed('error', { machine: meta.machine, error: errorSummary(err) }, 'observation failed');
    }
  }
}
