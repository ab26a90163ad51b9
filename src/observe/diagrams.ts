/**
 * Diagrams of the state machines, made from the machines themselves: each `machines/*.machine.ts`
 * is imported and its runtime definition (`machine.root`, a tree of StateNodes, and
 * `machine.implementations`) is turned into a Mermaid `stateDiagram-v2` and into tables of its
 * events, actions, guards, delays and actors. `chatgate machines` (`npm run machines`) writes them
 * to docs/machines.md; test/docs/machines.test.ts fails when that file is out of date.
 *
 * What the diagram shows:
 * - every state, by its short name, with an id made from its path (`open_active_token_valid`);
 *   compound states as `state X { … }`, the regions of a parallel state separated by `--`;
 * - `[*] -->` the initial state of each compound state, and final states `--> [*]`;
 * - every transition that has a target, labelled with its trigger and guard:
 *   `frame.join [isRoomAllowed]`, `after authTimeout`, `always [hasToken]`, `verifyToken done`,
 *   `verifyToken error`; transitions between the same two states share one arrow, one trigger a
 *   line. Transitions to the state itself that re-enter it (a timer armed again) are drawn.
 * - Transitions without a target (actions only, the state does not change) are left out of the
 *   diagram so that it stays readable; they are in the Events table under it, with their actions.
 *
 * Mermaid places a state in the last composite block that mentions it, so a transition is written
 * inside a block only when both ends are children of that block's state; every other transition
 * is written at the top level, where a mention does not move a state.
 */
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StateMachine, type AnyStateMachine, type AnyStateNode } from 'xstate';

const machinesDir = fileURLToPath(new URL('../../machines/', import.meta.url));
/** The repository (or installed package): `source.file` is relative to it, from src/ and dist/ alike. */
const packageRoot = dirname(createRequire(import.meta.url).resolve('chatgate/package.json'));
/** `.ts` run from the sources, `.js` from the build in dist/: the machines are beside this module. */
const moduleExt = extname(fileURLToPath(import.meta.url));

/** One transition of a machine, as the diagram and the tables show it. */
export interface MachineTransition {
  source: AnyStateNode;
  /** The event type as XState has it: `frame.join`, `xstate.after.authTimeout.connection.…`, `` for always. */
  eventType: string;
  /** The trigger as shown: `frame.join`, `after authTimeout`, `always`, `verifyToken done`. */
  trigger: string;
  guard: string | undefined;
  /** The named guards it checks, also inside `and`/`or`/`not`. */
  guards: string[];
  /** Empty: a transition without a target. */
  targets: AnyStateNode[];
  reenter: boolean;
  actions: string[];
  /** The delay of an `after` transition: its name, or milliseconds. */
  delay: string | number | undefined;
}

type Fn = ((...args: never[]) => unknown) & Record<string, unknown>;

/** A guard as written: `isRoomAllowed`, `not(isAbusive)`, `stateIn(#x.y)`, `inline`. */
function guardLabel(guard: unknown): string | undefined {
  if (guard === undefined) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const fn = guard as Fn;
    if (Array.isArray(fn.guards)) return `${fn.name}(${fn.guards.map(guardLabel).join(', ')})`;
    if (fn.stateValue !== undefined) return `stateIn(${JSON.stringify(fn.stateValue).replaceAll('"', '')})`;
    return 'inline';
  }
  const type = (guard as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'inline';
}

/** Names of the named guards a guard uses, through `and`/`or`/`not`. */
function guardNames(guard: unknown): string[] {
  if (typeof guard === 'string') return [guard];
  if (typeof guard === 'function') {
    const inner = (guard as Fn).guards;
    return Array.isArray(inner) ? inner.flatMap(guardNames) : [];
  }
  const type = (guard as { type?: unknown } | undefined)?.type;
  return typeof type === 'string' ? [type] : [];
}

/** An action as written: its name, or `assign (inline)` for an action written in place. */
function actionLabel(action: unknown): string {
  if (typeof action === 'string') return action;
  if (typeof action === 'function') {
    const type = (action as Fn).type;
    return `${typeof type === 'string' ? type.replace(/^xstate\./, '') : 'function'} (inline)`;
  }
  const type = (action as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'inline';
}

/** Entry and exit actions without the timers XState adds there for `after` transitions. */
function ownActions(actions: readonly unknown[]): string[] {
  return actions
    .filter((a) => {
      if (typeof a !== 'function') return true;
      const fn = a as Fn;
      if (fn.type === 'xstate.raise') return !String(fn.id ?? '').startsWith('xstate.after.');
      if (fn.type === 'xstate.cancel') return !String(fn.sendId ?? '').startsWith('xstate.after.');
      return true;
    })
    .map(actionLabel);
}

function trigger(node: AnyStateNode, eventType: string, delay: unknown): string {
  if (eventType === '') return 'always';
  if (delay !== undefined) {
    if (typeof delay === 'number') return `after ${delay}ms`;
    return typeof delay === 'string' ? `after ${delay}` : 'after (inline delay)';
  }
  const actor = /^xstate\.(done|error)\.actor\.(.*)$/.exec(eventType);
  if (actor) {
    const invoke = node.invoke.find((i) => i.id === actor[2]);
    const name = typeof invoke?.src === 'string' ? invoke.src : (invoke?.id ?? actor[2]);
    return `${name} ${actor[1]}`;
  }
  if (eventType.startsWith('xstate.done.state.')) return 'done';
  return eventType;
}

/** Every state node below the root, parents before children, in the order they are written. */
export function stateNodes(machine: AnyStateMachine): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  const walk = (node: AnyStateNode) => {
    for (const child of Object.values(node.states) as AnyStateNode[]) {
      out.push(child);
      walk(child);
    }
  };
  walk(machine.root);
  return out;
}

/** Every transition of the machine, in the order the definition has them. */
export function machineTransitions(machine: AnyStateMachine): MachineTransition[] {
  const out: MachineTransition[] = [];
  for (const node of [machine.root, ...stateNodes(machine)]) {
    const definitions = [...[...node.transitions.values()].flat(), ...(node.always ?? [])];
    for (const t of definitions) {
      const delay = (t as { delay?: unknown }).delay;
      out.push({
        source: node,
        eventType: t.eventType,
        trigger: trigger(node, t.eventType, delay),
        guard: guardLabel(t.guard),
        guards: guardNames(t.guard),
        targets: [...(t.target ?? [])],
        reenter: t.reenter,
        actions: t.actions.map(actionLabel),
        delay: typeof delay === 'string' || typeof delay === 'number' ? delay : undefined,
      });
    }
  }
  return out;
}

/** The state's path without the machine id: `open.active.token.valid`. */
export const statePath = (node: AnyStateNode) => (node.path.length ? node.path.join('.') : '(machine)');

/** Mermaid ids: the path joined by `_`, made unique, never a keyword or one of Mermaid's own `[*]` ids. */
function mermaidIds(machine: AnyStateMachine): Map<AnyStateNode, string> {
  const reserved = /^(default|click|href|class|classdef|style|state|note|direction|scale|end|root(_start|_end)?)$/i;
  const ids = new Map<AnyStateNode, string>();
  const taken = new Set<string>();
  for (const node of stateNodes(machine)) {
    const base = node.path.join('_').replace(/[^A-Za-z0-9_]/g, '_');
    let id = reserved.test(base) || /_(start|end)$/.test(base) ? `${base}_` : base;
    for (let n = 2; taken.has(id); n++) id = `${base}_${n}`;
    taken.add(id);
    ids.set(node, id);
  }
  return ids;
}

/** Text safe in a Mermaid label: no line breaks, `;` or `::`, which end or split a label. */
const mermaidText = (s: string) => s.replace(/[\r\n;]+/g, ' ').replaceAll('::', ': :').replaceAll('"', "'");

export const transitionLabel = (t: Pick<MachineTransition, 'trigger' | 'guard'>) =>
  t.guard === undefined ? t.trigger : `${t.trigger} [${t.guard}]`;

/** The machine as a Mermaid `stateDiagram-v2`, without the ```mermaid fence. */
export function toMermaid(machine: AnyStateMachine): string {
  const ids = mermaidIds(machine);
  const id = (node: AnyStateNode) => ids.get(node)!;

  // Arrows: one per pair of states, in the order of their first transition; placed in the block
  // of the state whose children they join (never inside a parallel state), else at the top level.
  const arrows = new Map<string, { from: string; to: string; labels: string[]; block: AnyStateNode }>();
  for (const t of machineTransitions(machine)) {
    for (const target of t.targets) {
      const key = `${id(t.source)} ${id(target)}`;
      const sameParent = t.source.parent !== undefined && t.source.parent === target.parent;
      const block = sameParent && t.source.parent!.type !== 'parallel' ? t.source.parent! : machine.root;
      const arrow = arrows.get(key) ?? { from: id(t.source), to: id(target), labels: [], block };
      const label = mermaidText(transitionLabel(t));
      if (!arrow.labels.includes(label)) arrow.labels.push(label);
      arrows.set(key, arrow);
    }
  }
  const arrowLines = (block: AnyStateNode, indent: string) =>
    [...arrows.values()]
      .filter((a) => a.block === block)
      .map((a) => `${indent}${a.from} --> ${a.to} : ${a.labels.join('<br>')}`);

  const lines: string[] = [];
  const body = (node: AnyStateNode, indent: string) => {
    const children = Object.values(node.states) as AnyStateNode[];
    if (node.type === 'parallel') {
      children.forEach((region, i) => {
        if (i > 0) lines.push(`${indent}--`);
        declare(region, indent);
      });
      return;
    }
    const initial = node.initial?.target?.[0];
    if (initial) lines.push(`${indent}[*] --> ${id(initial)}`);
    for (const child of children) declare(child, indent);
    lines.push(...arrowLines(node, indent));
    for (const child of children) if (child.type === 'final') lines.push(`${indent}${id(child)} --> [*]`);
  };
  const declare = (node: AnyStateNode, indent: string) => {
    const name = node.type === 'history' ? (node.history === 'deep' ? 'H*' : 'H') : node.key;
    const head = `${indent}state "${mermaidText(name)}" as ${id(node)}`;
    if (Object.keys(node.states).length === 0) {
      lines.push(head);
      return;
    }
    lines.push(`${head} {`);
    body(node, `${indent}  `);
    lines.push(`${indent}}`);
  };

  // The top level also gets the arrows that cross a block, after every block is declared.
  body(machine.root, '  ');
  return ['stateDiagram-v2', ...lines].join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// docs/machines.md

export interface MachineSource {
  /** The file, relative to the repository: `machines/connection.machine.ts`. */
  file: string;
  exportName: string;
  machine: AnyStateMachine;
  /** The machine's `description`, else the first paragraph of the file's leading doc comment. */
  description: string;
}

/** Every machine exported by `machines/*.machine.ts`, by file name. */
export async function loadMachines(): Promise<MachineSource[]> {
  const files = (await readdir(machinesDir)).filter((f) => f.endsWith(`.machine${moduleExt}`)).sort();
  const out: MachineSource[] = [];
  for (const file of files) {
    const path = join(machinesDir, file);
    const module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    const comment = /^\s*\/\*\*([\s\S]*?)\*\//.exec(await readFile(path, 'utf8'))?.[1] ?? '';
    const firstParagraph = comment
      .split('\n')
      .map((line) => line.replace(/^\s*\* ?/, '').trim())
      .join('\n')
      .trim()
      .split(/\n\s*\n/)[0]!
      .replace(/\s*\n\s*/g, ' ');
    for (const [exportName, value] of Object.entries(module)) {
      if (!(value instanceof StateMachine)) continue;
      const machine = value as AnyStateMachine;
      out.push({ file: `machines/${basename(file, moduleExt)}.ts`, exportName, machine, description: machine.root.description ?? firstParagraph });
    }
  }
  return out;
}

const code = (s: string) => `\`${s}\``;
const cell = (s: string) => s.replaceAll('|', '\\|').replace(/\s*\n\s*/g, ' ');
const table = (head: string[], rows: string[][]) =>
  [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
const unique = <T>(items: T[]) => [...new Set(items)];

/** What kind of action an implementation is: `assign`, `raise`, `emit`, `enqueueActions`, or `function`. */
function actionKind(implementation: unknown): string {
  const type = typeof implementation === 'function' ? (implementation as Fn).type : undefined;
  return typeof type === 'string' ? type.replace(/^xstate\./, '') : 'function';
}

function delayValue(delay: unknown): string {
  if (typeof delay === 'number') return `${delay} ms`;
  return typeof delay === 'function' ? 'computed from the context' : String(delay);
}

/** One machine's section of docs/machines.md. */
export function machineSection(source: MachineSource, outDir: string): string {
  const { machine } = source;
  const transitions = machineTransitions(machine);
  const nodes = stateNodes(machine);
  const impl = machine.implementations;
  const where = (node: AnyStateNode) => code(statePath(node));

  // Where each named action, guard, delay and actor is used: by state, then by trigger.
  type Uses = Map<string, Map<AnyStateNode, string[]>>;
  const uses = { actions: new Map() as Uses, guards: new Map() as Uses, delays: new Map() as Uses, actors: new Map() as Uses };
  const use = (map: Uses, name: string, node: AnyStateNode, at?: string) => {
    const byState = map.get(name) ?? new Map<AnyStateNode, string[]>();
    const ats = byState.get(node) ?? [];
    if (at !== undefined && !ats.includes(at)) ats.push(at);
    map.set(name, byState.set(node, ats));
  };
  for (const node of [machine.root, ...nodes]) {
    for (const a of ownActions(node.entry)) use(uses.actions, a, node, 'entry');
    for (const a of ownActions(node.exit)) use(uses.actions, a, node, 'exit');
    for (const i of node.invoke) use(uses.actors, typeof i.src === 'string' ? i.src : i.id, node);
  }
  for (const t of transitions) {
    for (const a of t.actions) use(uses.actions, a, t.source, t.trigger);
    for (const g of t.guards) use(uses.guards, g, t.source, t.trigger);
    if (t.delay !== undefined) use(uses.delays, String(t.delay), t.source);
  }
  const usedIn = (map: Uses, name: string) => {
    const byState = map.get(name);
    if (!byState) return 'not used';
    return [...byState].map(([node, ats]) => where(node) + (ats.length ? ` (${ats.join(', ')})` : '')).join('; ');
  };

  const events = unique(transitions.map((t) => t.trigger));
  const parallel = nodes.filter((n) => n.type === 'parallel');
  const finals = nodes.filter((n) => n.type === 'final');
  const summary =
    `${nodes.length} states (${parallel.length} parallel, ${finals.length} final), ` +
    `${events.length} triggers, ${transitions.length} transitions of which ` +
    `${transitions.filter((t) => t.targets.length === 0).length} without a target.`;

  const eventRows = events.flatMap((event) =>
    transitions
      .filter((t) => t.trigger === event)
      .map((t) => [
        code(event),
        where(t.source),
        t.guard ? code(t.guard) : '',
        t.targets.length === 0
          ? 'stays'
          : t.targets.map((n) => where(n) + (t.reenter && n === t.source ? ' (re-entered)' : '')).join(', '),
        t.actions.map(code).join(', '),
      ]),
  );
  const delayNames = unique([...Object.keys(impl.delays), ...uses.delays.keys()]);
  const link = relative(outDir, resolve(packageRoot, source.file)).split(sep).join('/');

  return [
    `## ${source.file.replace(/^machines\//, '').replace(/\.machine\.ts$/, '')}`,
    '',
    `${code(source.exportName)}, id ${code(machine.id)}, in [${source.file}](${link}). ${source.description}`,
    '',
    summary,
    '',
    '```mermaid',
    toMermaid(machine).trimEnd(),
    '```',
    '',
    '### Events',
    '',
    'Every transition, by trigger; "stays" marks a transition without a target, which the diagram leaves out.',
    '',
    table(['Trigger', 'In state', 'Guard', 'Goes to', 'Actions'], eventRows),
    '',
    '### Actions',
    '',
    table(['Action', 'Kind', 'Used in'], Object.entries(impl.actions).map(([name, a]) => [code(name), actionKind(a), usedIn(uses.actions, name)])),
    '',
    '### Guards',
    '',
    table(['Guard', 'Checked in'], Object.keys(impl.guards).map((name) => [code(name), usedIn(uses.guards, name)])),
    '',
    '### Delays',
    '',
    table(['Delay', 'Value', 'Used in'], delayNames.map((name) => [code(name), delayValue(impl.delays[name] ?? Number(name)), usedIn(uses.delays, name)])),
    '',
    '### Actors',
    '',
    table(['Actor', 'Invoked in'], Object.keys(impl.actors).map((name) => [code(name), usedIn(uses.actors, name)])),
    '',
  ].join('\n');
}

const intro = `# State machines

<!-- Generated from machines/*.machine.ts by \`npm run machines\`; do not edit by hand. -->

This file is generated from the machine definitions themselves, never drawn by hand:
\`npm run machines\` (or \`chatgate machines --out <file>\`) imports every \`machines/*.machine.ts\`,
reads each machine's states, transitions and \`setup()\` implementations, and writes them here.
\`test/docs/machines.test.ts\` fails when this file no longer matches the machines; run
\`npm run machines\` after changing one.

In the diagrams a transition is labelled with its trigger and its guard in brackets:
\`frame.join [isRoomAllowed]\`, \`after authTimeout\` (a named delay), \`always [hasToken]\` (no
event), \`verifyToken done\` / \`verifyToken error\` (an invoked actor settled). Transitions
between the same two states share one arrow. The regions of a parallel state are separated by a
dashed line. Transitions without a target (actions only) are left out of the diagrams to keep
them readable; the Events table under each diagram lists every transition, with its actions.
An action of kind \`function\` is a plain function; the effects among them have empty bodies in
\`machines/\` and are supplied by \`src/\` with \`machine.provide(...)\`.

To open a machine in Stately's visual editor: each is a plain \`setup({...}).createMachine({...})\`
in \`machines/*.machine.ts\`. In VS Code, open the file and run *Stately: Open Visual Editor*
(Stately's editor extension), or use *Open Visual Editor* above \`createMachine\` with the older
XState extension, whose support of XState v5 is partial. In Stately Studio, create a machine and
use *Import* with the \`createMachine({...})\` call; the implementations stay in the code (the
editor sees their names only).
`;

/** The whole of docs/machines.md, with links relative to `out`. */
export async function machinesMarkdown(out = 'docs/machines.md'): Promise<string> {
  const outDir = dirname(resolve(out));
  const sections = (await loadMachines()).map((source) => machineSection(source, outDir));
  return [intro, ...sections].join('\n').trimEnd() + '\n';
}
