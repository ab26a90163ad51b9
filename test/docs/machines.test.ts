import { describe, expect, it } from 'vitest';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { assign, not, setup, type AnyStateMachine, type AnyStateNode } from 'xstate';
import { loadMachines, machinesMarkdown, machineSection, toMermaid } from '../../src/observe/diagrams.ts';

const docPath = fileURLToPath(new URL('../../docs/machines.md', import.meta.url));
const machinesDir = fileURLToPath(new URL('../../machines/', import.meta.url));
const sources = await loadMachines();

/** Every state below the root, walked here rather than taken from src/observe/diagrams.ts. */
function states(machine: AnyStateMachine): AnyStateNode[] {
  const walk = (node: AnyStateNode): AnyStateNode[] =>
    (Object.values(node.states) as AnyStateNode[]).flatMap((child) => [child, ...walk(child)]);
  return walk(machine.root);
}

/** Reads a diagram back: each declared state's id, label and enclosing composite, and the arrows. */
function readDiagram(text: string) {
  const parents = new Map<string, { label: string; parent: string }>();
  const dividers = new Map<string, number>();
  const arrows: Array<{ from: string; to: string; labels: string[] }> = [];
  const stack = ['(root)'];
  for (const line of text.split('\n').slice(1).map((l) => l.trim())) {
    const state = /^state "([^"]*)" as (\w+)( \{)?$/.exec(line);
    const arrow = /^(\S+) --> (\S+)(?: : (.*))?$/.exec(line);
    if (state) {
      parents.set(state[2]!, { label: state[1]!, parent: stack.at(-1)! });
      if (state[3]) stack.push(state[2]!);
    } else if (line === '}') stack.pop();
    else if (line === '--') dividers.set(stack.at(-1)!, (dividers.get(stack.at(-1)!) ?? 0) + 1);
    else if (arrow) arrows.push({ from: arrow[1]!, to: arrow[2]!, labels: arrow[3]?.split('<br>') ?? [] });
    else if (line !== '') throw new Error(`unexpected line in diagram: ${line}`);
  }
  return { parents, dividers, arrows };
}

const mermaidId = (node: AnyStateNode) => node.path.join('_');

describe('docs - machines.md', () => {
  it('docs - machines.md is up to date', async () => {
    const committed = await readFile(docPath, 'utf8').catch(() => '');
    expect(committed, 'docs/machines.md is out of date with machines/: run `npm run machines`').toBe(
      await machinesMarkdown(docPath),
    );
  });

  it('docs - every machines/*.machine.ts is documented', async () => {
    const files = (await readdir(machinesDir)).filter((f) => f.endsWith('.machine.ts'));
    expect(files.length).toBeGreaterThan(0);
    expect(new Set(sources.map((s) => s.file))).toEqual(new Set(files.map((f) => `machines/${f}`)));
  });
});

describe.each(sources.map((s) => [s.file, s] as const))('docs - %s', (_, source) => {
  const { machine } = source;
  const text = toMermaid(machine);
  const diagram = readDiagram(text);
  const section = machineSection(source, fileURLToPath(new URL('../../docs/', import.meta.url)));
  const labels = diagram.arrows.flatMap((a) => a.labels);
  const transitions = [machine.root, ...states(machine)].flatMap((node) =>
    [...[...node.transitions.values()].flat(), ...(node.always ?? [])].map((t) => ({ node, t })),
  );

  it('docs - every state is in the diagram, under its parent, with its short name', () => {
    for (const node of states(machine)) {
      const parent = node.parent === machine.root ? '(root)' : mermaidId(node.parent!);
      expect(diagram.parents.get(mermaidId(node)), node.id).toEqual({ label: node.key, parent });
    }
    expect(diagram.parents.size).toBe(states(machine).length);
  });

  it('docs - compound states start at their initial state, final states end, parallel regions are split', () => {
    for (const node of [machine.root, ...states(machine)]) {
      const from = (id: string) => diagram.arrows.some((a) => a.from === id && a.to === '[*]');
      if (node.type === 'compound') {
        const initial = mermaidId(node.initial.target[0]!);
        expect(text, node.id).toMatch(new RegExp(`^\\s*\\[\\*\\] --> ${initial}$`, 'm'));
      }
      if (node.type === 'final') expect(from(mermaidId(node)), node.id).toBe(true);
      if (node.type === 'parallel') {
        expect(diagram.dividers.get(mermaidId(node)), node.id).toBe(Object.keys(node.states).length - 1);
      }
    }
  });

  it('docs - every transition with a target is an arrow labelled with its trigger and guard', () => {
    for (const { node, t } of transitions) {
      const delay = (t as { delay?: unknown }).delay;
      const actor = /^xstate\.(done|error)\.actor\.(.*)$/.exec(t.eventType);
      const src = actor && node.invoke.find((i) => i.id === actor[2])?.src;
      const trigger =
        t.eventType === '' ? 'always'
        : delay !== undefined ? `after ${typeof delay === 'number' ? `${delay}ms` : String(delay)}`
        : actor ? `${String(src)} ${actor[1]}`
        : t.eventType;
      // A named guard is shown by name; `and`/`or`/`not` by their own label, checked in the small machine below.
      const guard = typeof t.guard === 'string' ? t.guard : (t.guard as { type?: string } | undefined)?.type;
      const matches = (label: string) =>
        t.guard === undefined ? label === trigger
        : typeof t.guard === 'function' ? label.startsWith(`${trigger} [`)
        : label === `${trigger} [${guard}]`;
      for (const target of t.target ?? []) {
        const arrow = diagram.arrows.find((a) => a.from === mermaidId(node) && a.to === mermaidId(target));
        expect(arrow?.labels.some(matches), `${node.id} --> ${target.id} on ${trigger}`).toBe(true);
      }
      // Without a target it is not drawn, but the Events table has it.
      const where = node.path.length ? node.path.join('.') : '(machine)';
      if (!t.target?.length) expect(section, `${node.id} on ${t.eventType}`).toContain(`| \`${trigger}\` | \`${where}\``);
    }
  });

  it('docs - every event type with a target appears in the diagram, every other in the Events table', () => {
    const events = new Set(transitions.map(({ t }) => t.eventType).filter((e) => e !== '' && !e.startsWith('xstate.')));
    expect(events.size).toBeGreaterThan(0);
    for (const event of events) {
      const targeted = transitions.some(({ t }) => t.eventType === event && t.target?.length);
      if (targeted) expect(labels.some((l) => l === event || l.startsWith(`${event} [`)), event).toBe(true);
      else expect(section, event).toContain(`| \`${event}\` |`);
    }
  });

  it('docs - every named delay, guard, action and actor of setup() is documented', () => {
    const { delays, guards, actions, actors } = machine.implementations;
    for (const name of Object.keys(delays)) {
      expect(labels.some((l) => l.startsWith(`after ${name}`)), `after ${name}`).toBe(true);
      expect(section).toMatch(new RegExp(`^\\| \`${name}\` \\| `, 'm'));
    }
    for (const name of [...Object.keys(guards), ...Object.keys(actions), ...Object.keys(actors)]) {
      expect(section, name).toMatch(new RegExp(`^\\| \`${name}\` \\| `, 'm'));
    }
  });
});

describe('docs - diagram of a small machine', () => {
  const machine = setup({
    guards: { isReady: () => true },
    delays: { retry: 100 },
    actions: { log: () => {} },
  }).createMachine({
    id: 'sample',
    initial: 'idle',
    states: {
      idle: {
        on: { 'job.start': { guard: 'isReady', target: 'busy' }, 'job.poke': { actions: 'log' } },
        after: { retry: { target: 'idle', reenter: true } },
      },
      busy: {
        type: 'parallel',
        states: {
          work: { initial: 'running', states: { running: { after: { 250: 'done' } }, done: { type: 'final' } } },
          watch: { initial: 'on', states: { on: { on: { 'watch.off': { guard: not('isReady'), target: '#sample.end' } } } } },
        },
      },
      end: { type: 'final', entry: assign({}) },
    },
  });

  it('docs - a small machine gives nested blocks, regions, initial and final states and labelled arrows', () => {
    expect(toMermaid(machine)).toBe(
      [
        'stateDiagram-v2',
        '  [*] --> idle',
        '  state "idle" as idle',
        '  state "busy" as busy {',
        '    state "work" as busy_work {',
        '      [*] --> busy_work_running',
        '      state "running" as busy_work_running',
        '      state "done" as busy_work_done',
        '      busy_work_running --> busy_work_done : after 250ms',
        '      busy_work_done --> [*]',
        '    }',
        '    --',
        '    state "watch" as busy_watch {',
        '      [*] --> busy_watch_on',
        '      state "on" as busy_watch_on',
        '    }',
        '  }',
        // `end` is a Mermaid keyword, so its id gets a suffix.
        '  state "end" as end_',
        '  idle --> busy : job.start [isReady]',
        '  idle --> idle : after retry',
        // Across blocks: at the top level, where a mention does not move a state.
        '  busy_watch_on --> end_ : watch.off [not(isReady)]',
        '  end_ --> [*]',
        '',
      ].join('\n'),
    );
  });
});
