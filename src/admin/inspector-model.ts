/**
 * What the inspector page shows, derived from the machines and the live actors of one gateway:
 * each machine's Mermaid diagram (from diagrams.ts) with the Mermaid id of each state, the number
 * of actors in each state (read from the actors' snapshots when asked, never a second counter),
 * and the list of live connections. The page draws and annotates; this module only reads.
 */
import type { AnyStateMachine, StateValue } from 'xstate';
import { loadMachines, stateNodes, statePath, toMermaid } from '../observe/diagrams.ts';
import type { Gateway } from '../gateway/gateway.ts';

/** One state of a diagram: its path in the machine and its id and label in the Mermaid text. */
export interface DiagramState {
  /** `open.active.token.valid` */
  path: string;
  /** `open_active_token_valid` */
  id: string;
  /** The label as the Mermaid text has it: `valid`. */
  label: string;
}

export interface MachineView {
  /** The machine's id: `connection`, `breaker`. */
  id: string;
  /** The file it is defined in: `machines/connection.machine.ts`. */
  file: string;
  description: string;
  mermaid: string;
  states: DiagramState[];
}

/**
 * The states of a diagram in the order `toMermaid` declares them (`state "label" as id`), which
 * is the order of `stateNodes`: parents before children, as written. Reading the ids back from
 * the text keeps diagrams.ts the one place that makes them.
 */
export function diagramStates(machine: AnyStateMachine, mermaid: string): DiagramState[] {
  const declared = [...mermaid.matchAll(/^\s*state "([^"]*)" as (\S+)/gm)];
  const nodes = stateNodes(machine);
  if (declared.length !== nodes.length) {
    throw new Error(`diagram of ${machine.id} declares ${declared.length} states, the machine has ${nodes.length}`);
  }
  return nodes.map((node, i) => ({ path: statePath(node), label: declared[i]![1]!, id: declared[i]![2]! }));
}

/** Every machine of `machines/`, as the page draws it. */
export async function machineViews(): Promise<MachineView[]> {
  return (await loadMachines()).map(({ machine, file, description }) => {
    const mermaid = toMermaid(machine);
    return { id: machine.id, file, description, mermaid, states: diagramStates(machine, mermaid) };
  });
}

/**
 * The paths of every state a snapshot is in, parents included:
 * `{ open: { active: { token: 'valid', refresh: 'idle' } } }` gives `open`, `open.active`,
 * `open.active.token`, `open.active.token.valid`, `open.active.refresh`, `open.active.refresh.idle`.
 */
export function activePaths(value: StateValue, prefix = ''): string[] {
  if (typeof value === 'string') return [prefix + value];
  const out: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    out.push(prefix + key);
    if (child !== undefined) out.push(...activePaths(child, `${prefix}${key}.`));
  }
  return out;
}

/** Actors per state path, counted from the given snapshots' values. */
export function countStates(values: Iterable<StateValue>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) {
    for (const path of activePaths(value)) counts[path] = (counts[path] ?? 0) + 1;
  }
  return counts;
}

/** The live actors of each machine on this node, by machine id. */
function liveValues(gateway: Gateway): Record<string, () => Iterable<StateValue>> {
  return {
    connection: function* () {
      for (const session of gateway.sessions.values()) yield session.actor.getSnapshot().value;
    },
    breaker: function* () {
      yield gateway.auth.breaker.getSnapshot().value;
    },
  };
}

/** Counts per machine and state, read from the actors now. */
export function stateCounts(gateway: Gateway): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [machine, values] of Object.entries(liveValues(gateway))) out[machine] = countStates(values());
  return out;
}

export interface ConnectionView {
  session: string;
  user: string | null;
  /** Every state path the actor is in, leaves only: `open.active.token.valid`. */
  states: string[];
  ageMs: number;
}

/** The leaf paths among a snapshot's active paths. */
export function leafPaths(value: StateValue): string[] {
  const paths = activePaths(value);
  return paths.filter((p) => !paths.some((q) => q.startsWith(`${p}.`)));
}

/** The live connections, oldest first, at most `limit` of them. */
export function connectionViews(gateway: Gateway, limit: number, now = Date.now()): { total: number; connections: ConnectionView[] } {
  const connections: ConnectionView[] = [];
  for (const session of gateway.sessions.values()) {
    if (connections.length >= limit) break;
    const snapshot = session.actor.getSnapshot();
    connections.push({
      session: session.id,
      user: snapshot.context.user ?? null,
      states: leafPaths(snapshot.value),
      ageMs: now - session.startedAt,
    });
  }
  return { total: gateway.sessions.size, connections };
}
