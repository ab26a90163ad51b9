/**
 * Seeing what the machines live through, as it happens: every event a connection actor or the
 * auth breaker receives, each state it enters and each effect it asks for, with its time offset
 * from the actor's start. The inspector page and the recorder listen here; nothing is collected
 * while nobody listens. Tokens and message bodies are redacted unless a listener asks otherwise.
 */
import type { AnyEventObject, InspectionEvent, StateValue } from 'xstate';

export type ObservedMachine = 'connection' | 'breaker';

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

const SECRET_KEYS = new Set(['token', 'body']);
export const REDACTED = '[redacted]';

/**
 * A plain JSON-safe copy of `value` with every `token` and `body` field replaced, at any depth.
 * Only plain objects and arrays are followed: anything else that is an object (an actor
 * reference in a spawn or stop action, which points back at itself) becomes a short label, and a
 * cycle is cut.
 */
export function redact<T>(value: T, keep = false): T {
  const seen = new WeakSet<object>();
  const copy = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return typeof v === 'function' ? '[function]' : v;
    if (seen.has(v)) return '[cycle]';
    const proto = Object.getPrototypeOf(v);
    if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) {
      const id = (v as { id?: unknown }).id;
      return typeof id === 'string' ? `[${id}]` : '[object]';
    }
    seen.add(v);
    if (Array.isArray(v)) return v.map(copy);
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(v)) {
      out[key] = !keep && SECRET_KEYS.has(key) && item !== undefined ? REDACTED : copy(item);
    }
    return out;
  };
  return copy(value) as T;
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

export class Observers {
  readonly #listeners = new Set<Listener>();

  get active(): boolean {
    return this.#listeners.size > 0;
  }

  /** Starts listening; returns the function that stops it. */
  listen(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(o: Observation): void {
    let redacted: Observation | undefined;
    let plain: Observation | undefined;
    for (const listener of this.#listeners) {
      if (!matches(listener.filter, o)) continue;
      // State values are never secret (a region may be called `token`); events and actions may be.
      if (listener.raw) listener.receive((plain ??= { ...o, event: redact(o.event, true), action: redact(o.action, true) }));
      else listener.receive((redacted ??= { ...o, event: redact(o.event), action: redact(o.action) }));
    }
  }

  /**
   * The `inspect` option for one root actor: its own events, states and actions (not its
   * children's) become observations.
   */
  inspector(meta: { machine: ObservedMachine; node: string; session?: string }, user: () => string | undefined) {
    const startedAt = performance.now();
    return (ev: InspectionEvent) => {
      if (this.#listeners.size === 0 || ev.actorRef.sessionId !== ev.rootId) return;
      const base = { ...meta, user: user(), t: Math.round((performance.now() - startedAt) * 1000) / 1000 };
      switch (ev.type) {
        case '@xstate.event':
          // `xstate.init` and events the actor sends itself are part of the machine, not input.
          if (ev.event.type !== 'xstate.init') this.emit({ ...base, kind: 'event', event: ev.event });
          break;
        case '@xstate.snapshot':
          this.emit({ ...base, kind: 'state', state: (ev.snapshot as { value?: StateValue }).value });
          break;
        case '@xstate.action':
          this.emit({ ...base, kind: 'action', action: ev.action });
          break;
      }
    };
  }
}
