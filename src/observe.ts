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

/** A copy of `value` with every `token` and `body` field replaced, at any depth. */
export function redact<T>(value: T): T {
  if (Array.isArray(value)) return value.map(redact) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] = SECRET_KEYS.has(key) && v !== undefined ? REDACTED : redact(v);
  }
  return out as T;
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
    for (const listener of this.#listeners) {
      if (!matches(listener.filter, o)) continue;
      listener.receive(listener.raw ? o : (redacted ??= redact(o)));
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
