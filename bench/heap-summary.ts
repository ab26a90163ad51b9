/**
 * Summarizes a `.heapsnapshot` (from `npm run bench -- --heap-snapshot DIR`, taken with the idle
 * sessions open): self size and count by constructor / kind, largest first. With `--per N` it
 * also divides by N (the sessions on that node) to read as bytes per idle session; compare with a
 * snapshot of the relay, or of a node with no sessions, to see what a session adds.
 *
 *   npx tsx bench/heap-summary.ts /tmp/heap/chatgate-a-idle-12000.heapsnapshot --per 6000 [--top 40]
 *       [--base /tmp/heap/relay-a-idle-12000.heapsnapshot]
 *
 * `--base` subtracts another snapshot group by group: what chatgate holds beyond the relay.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] }; node_count: number };
  nodes: number[];
  strings: string[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '40' }, per: { type: 'string' }, base: { type: 'string' } },
});
const file = positionals[0];
if (!file) {
  process.stderr.write('usage: tsx bench/heap-summary.ts FILE.heapsnapshot [--per SESSIONS] [--top N]\n');
  process.exit(2);
}
const top = Number(values.top);
const per = values.per ? Number(values.per) : undefined;

type Groups = Map<string, { size: number; count: number }>;

function summarize(path: string): { groups: Groups; total: number; nodes: number } {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const stride = fields.length;
  const TYPE = fields.indexOf('type');
  const NAME = fields.indexOf('name');
  const SIZE = fields.indexOf('self_size');
  const groups: Groups = new Map();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += stride) {
    const type = types[snap.nodes[i + TYPE]!]!;
    const size = snap.nodes[i + SIZE]!;
    total += size;
    // Objects by constructor name; strings, code, arrays and the rest by kind.
    let name = type;
    if (type === 'object' || type === 'closure' || type === 'native') name = `${type} ${snap.strings[snap.nodes[i + NAME]!]}`;
    else if (type === 'hidden' || type === 'array' || type === 'object shape') name = `${type} ${snap.strings[snap.nodes[i + NAME]!]?.slice(0, 60)}`;
    const g = groups.get(name) ?? { size: 0, count: 0 };
    g.size += size;
    g.count += 1;
    groups.set(name, g);
  }
  return { groups, total, nodes: snap.snapshot.node_count };
}

const { groups, total, nodes } = summarize(file);
const kib = (b: number) => `${(b / 1024).toFixed(0).padStart(9)} KiB`;
process.stdout.write(`${file}\n${(total / 2 ** 20).toFixed(1)} MiB in ${nodes} nodes\n`);
if (values.base) {
  // What this snapshot holds beyond the base (the relay's, or a node with no sessions).
  const base = summarize(values.base);
  process.stdout.write(`minus ${values.base}: ${(base.total / 2 ** 20).toFixed(1)} MiB; difference ${((total - base.total) / 2 ** 20).toFixed(1)} MiB\n`);
  for (const [name, g] of base.groups) {
    const mine = groups.get(name) ?? { size: 0, count: 0 };
    groups.set(name, { size: mine.size - g.size, count: mine.count - g.count });
  }
}
process.stdout.write('\n');
process.stdout.write(per ? `     self size     count   bytes/session  count/session  name\n` : `     self size     count  name\n`);
for (const [name, g] of [...groups].sort((a, b) => b[1].size - a[1].size).slice(0, top)) {
  const perCols = per ? `${(g.size / per).toFixed(0).padStart(14)} ${(g.count / per).toFixed(2).padStart(14)}` : '';
  process.stdout.write(`${kib(g.size)} ${String(g.count).padStart(9)} ${perCols}  ${name}\n`);
}
