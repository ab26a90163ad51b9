/**
 * Summarizes a `.cpuprofile` (from `node --cpu-prof`, or `npm run bench -- --cpu-prof DIR`):
 * the functions with the most self time, the most total (inclusive) time among this project's own
 * functions, and self time by where the code lives (src/, machines/, each package, Node internals,
 * GC, idle).
 *
 *   npx tsx bench/profile-summary.ts /tmp/prof/chatgate-a-throughput.cpuprofile [--top 30] [--match REGEX]
 *
 * `--match` also lists the total time of every function whose name and location match REGEX.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' }, match: { type: 'string' } },
});
const file = positionals[0];
if (!file) {
  process.stderr.write('usage: tsx bench/profile-summary.ts FILE.cpuprofile [--top N]\n');
  process.exit(2);
}
const top = Number(values.top);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** Where a function lives: a short, readable location. */
function where(url: string): string {
  if (!url) return '';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return path.slice(nm + '/node_modules/'.length);
  const repo = path.search(/\/(src|machines|bench|test)\//);
  if (repo >= 0) return path.slice(repo + 1);
  return path;
}

/** The bucket of a location: src/x.ts, machines/, a package name, node:internal, or a special. */
function area(frame: CallFrame): string {
  const name = frame.functionName;
  if (!frame.url) {
    if (name === '(garbage collector)' || name === '(idle)' || name === '(program)' || name === '(root)') return name;
    return '(native / builtins)';
  }
  const w = where(frame.url);
  if (w.startsWith('src/') || w.startsWith('bench/')) return w;
  if (w.startsWith('machines/')) return 'machines/';
  if (frame.url.startsWith('node:')) return 'node: internals';
  const pkg = w.startsWith('@') ? w.split('/').slice(0, 2).join('/') : w.split('/')[0]!;
  return pkg;
}

const key = (f: CallFrame) => `${f.functionName || '(anonymous)'}  ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;

const self = new Map<string, number>();
const total = new Map<string, number>();
const areas = new Map<string, number>();
let sum = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  const node = byId.get(profile.samples[i]!);
  if (!node) continue;
  sum += dt;
  const k = key(node.callFrame);
  self.set(k, (self.get(k) ?? 0) + dt);
  areas.set(area(node.callFrame), (areas.get(area(node.callFrame)) ?? 0) + dt);
  // Inclusive time: each function once per sample, however often it recurs on the stack.
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const frame = byId.get(id)!.callFrame;
    const fk = key(frame);
    if (seen.has(fk)) continue;
    seen.add(fk);
    total.set(fk, (total.get(fk) ?? 0) + dt);
  }
}

const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
const busy = sum - idle;
const pct = (v: number, of: number) => `${((v / of) * 100).toFixed(1).padStart(5)}%`;
const ms = (v: number) => `${(v / 1000).toFixed(0).padStart(7)} ms`;
const print = (title: string, rows: Array<[string, number]>, of: number) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of rows) process.stdout.write(`${ms(v)} ${pct(v, of)}  ${k}\n`);
};

process.stdout.write(
  `${file}\n${(sum / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (not idle); percentages are of busy time\n`,
);
print(
  `Self time by area`,
  [...areas].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]),
  busy,
);
print(
  `Top ${top} functions by self time`,
  [...self].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top),
  busy,
);
if (values.match) {
  const re = new RegExp(values.match);
  print(
    `Functions matching /${values.match}/ by total time`,
    [...total].filter(([k]) => re.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top),
    busy,
  );
}
print(
  `Top ${top} of this project's functions (src/, machines/) by total time`,
  [...total]
    .filter(([k]) => /\s(src|machines)\//.test(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top),
  busy,
);
