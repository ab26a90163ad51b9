/**
 * The figures of `npm run bench` and its table: each figure pooled over every round (totals, or
 * one histogram of every latency sample), the worst round beside the pooled p99, and the ratios
 * chatgate/relay, chatgate/Socket.IO and durable/relay-js with the goals of issue 15.
 */
import type { Target } from './kinds.ts';
import { goalText, pooledPercentileMs, rangeText, ratio, sum, verdict, worstOf, type Goal } from './stats.ts';

type Memory = NodeJS.MemoryUsage;
export interface Cpu {
  nodes: number;
  auth: number;
  broker: number;
}

export interface ConnectSlice {
  opened: number;
  failed: number;
  degraded: number;
  elapsedMs: number;
  /** CPU ms of every server process (nodes, auth, broker) over the slice. */
  cpu: Cpu;
  firstError?: string;
}
export interface MemoryResult {
  before: Memory[];
  after: Memory[];
  sessions: number;
  subscriptions: number;
}
export interface ThroughputSlice {
  delivered: number;
  seconds: number;
  cpu: Cpu;
  loadgenCpuMs: number;
  errors: number;
  lost: number;
  paced: number;
  firstError?: string;
}
export interface OpenLoopSlice {
  /** Microseconds, hdr compressed base64: the measured window's deliveries. */
  histogram: string;
  measuredSent: number;
  measuredExpected: number;
  measuredReceived: number;
  /** Every delivery of the slice (warm-up and drain included), for CPU per 1,000. */
  delivered: number;
  cpu: Cpu;
  seconds: number;
  errors: number;
  firstError?: string;
}
export interface TargetResults {
  connect: ConnectSlice[];
  memory?: MemoryResult;
  throughput: ThroughputSlice[];
  latency: OpenLoopSlice[];
  fanout: OpenLoopSlice[];
}

const cpuTotal = (c: Cpu) => c.nodes + c.auth + c.broker;
const per1k = (ms: number, n: number) => (n > 0 ? (ms / n) * 1000 : Number.NaN);

/** Every figure of one target from some of its slices (all rounds, or one). */
export function figuresOf(r: TargetResults): Record<FigureKey, number> {
  const f = {} as Record<FigureKey, number>;
  const c = r.connect;
  const opened = sum(c.map((s) => s.opened));
  f.connectRate = opened / (sum(c.map((s) => s.elapsedMs)) / 1000);
  f.cpuMsPerConnect = sum(c.map((s) => cpuTotal(s.cpu))) / opened;
  if (r.memory) {
    const { before, after, sessions } = r.memory;
    const per = (k: 'rss' | 'heapUsed') => (sum(after.map((m) => m[k])) - sum(before.map((m) => m[k]))) / sessions / 1024;
    f.rssPerConnKiB = per('rss');
    f.heapPerConnKiB = per('heapUsed');
  }
  const t = r.throughput;
  const delivered = sum(t.map((s) => s.delivered));
  f.throughput = delivered / sum(t.map((s) => s.seconds));
  f.throughputWorst = worstOf(t.map((s) => s.delivered / s.seconds), false);
  f.cpuMsPer1k = per1k(sum(t.map((s) => cpuTotal(s.cpu))), delivered);
  f.nodesCpuMsPer1k = per1k(sum(t.map((s) => s.cpu.nodes)), delivered);
  f.authCpuMsPer1k = per1k(sum(t.map((s) => s.cpu.auth)), delivered);
  f.brokerCpuMsPer1k = per1k(sum(t.map((s) => s.cpu.broker)), delivered);
  f.loadgenCpuMsPer1k = per1k(sum(t.map((s) => s.loadgenCpuMs)), delivered);
  const open = (slices: OpenLoopSlice[], prefix: 'lat' | 'fan') => {
    const hs = slices.map((s) => s.histogram);
    f[`${prefix}P50`] = pooledPercentileMs(hs, 50);
    f[`${prefix}P99`] = pooledPercentileMs(hs, 99);
    f[`${prefix}P99Worst`] = worstOf(hs.map((h) => pooledPercentileMs([h], 99)), true);
    f[`${prefix}P999`] = pooledPercentileMs(hs, 99.9);
    f[`${prefix}CpuMsPer1k`] = per1k(sum(slices.map((s) => cpuTotal(s.cpu))), sum(slices.map((s) => s.delivered)));
  };
  open(r.latency, 'lat');
  open(r.fanout, 'fan');
  f.fanRate = sum(r.fanout.map((s) => s.delivered)) / sum(r.fanout.map((s) => s.seconds));
  return f;
}

/** The same figure in each round on its own (for the per-round ratio ranges). */
function roundFigures(r: TargetResults, round: number): Record<FigureKey, number> {
  return figuresOf({
    connect: r.connect.slice(round, round + 1),
    memory: r.memory,
    throughput: r.throughput.slice(round, round + 1),
    latency: r.latency.slice(round, round + 1),
    fanout: r.fanout.slice(round, round + 1),
  });
}

export type FigureKey =
  | 'connectRate'
  | 'cpuMsPerConnect'
  | 'rssPerConnKiB'
  | 'heapPerConnKiB'
  | 'throughput'
  | 'throughputWorst'
  | 'cpuMsPer1k'
  | 'nodesCpuMsPer1k'
  | 'authCpuMsPer1k'
  | 'brokerCpuMsPer1k'
  | 'loadgenCpuMsPer1k'
  | 'latP50'
  | 'latP99'
  | 'latP99Worst'
  | 'latP999'
  | 'latCpuMsPer1k'
  | 'fanRate'
  | 'fanP50'
  | 'fanP99'
  | 'fanP99Worst'
  | 'fanP999'
  | 'fanCpuMsPer1k';

interface Row {
  label: string;
  key: FigureKey;
  digits: number;
  /** Goals of issue 15 for ephemeral/relay, ephemeral/Socket.IO, durable/relay-js. */
  relay?: Goal;
  socketio?: Goal;
  relayJs?: Goal;
}

const AT_LEAST_1: Goal = { ratio: 1, atLeast: true };
const AT_MOST_1: Goal = { ratio: 1, atLeast: false };

export const ROWS: Row[] = [
  { label: 'connect rate, authenticated (sessions/s)', key: 'connectRate', digits: 0, relay: { ratio: 0.6, atLeast: true }, socketio: AT_LEAST_1 },
  { label: '  server CPU per connect, all processes (ms)', key: 'cpuMsPerConnect', digits: 2 },
  { label: 'idle memory per connection, RSS (KiB)', key: 'rssPerConnKiB', digits: 2, relay: { ratio: 1.6, atLeast: false }, socketio: AT_MOST_1 },
  { label: 'idle memory per connection, heap (KiB)', key: 'heapPerConnKiB', digits: 2, relay: { ratio: 1.6, atLeast: false }, socketio: AT_MOST_1 },
  {
    label: 'throughput, cross-node both ways (msgs/s)',
    key: 'throughput',
    digits: 0,
    relay: { ratio: 0.7, atLeast: true },
    socketio: { ratio: 1.2, atLeast: true },
    relayJs: { ratio: 0.7, atLeast: true },
  },
  { label: '  worst round (msgs/s)', key: 'throughputWorst', digits: 0 },
  { label: 'server CPU per 1,000 msgs at saturation (ms)', key: 'cpuMsPer1k', digits: 1, relay: { ratio: 1.6, atLeast: false }, socketio: AT_MOST_1 },
  { label: '  of which nodes (gateways/relays/Socket.IO)', key: 'nodesCpuMsPer1k', digits: 1 },
  { label: '  of which auth service', key: 'authCpuMsPer1k', digits: 1 },
  { label: '  of which broker (nats-server / redis-server)', key: 'brokerCpuMsPer1k', digits: 1 },
  { label: '  load generators (not counted above)', key: 'loadgenCpuMsPer1k', digits: 1 },
  { label: 'latency p50 at the fixed rate (ms)', key: 'latP50', digits: 2 },
  { label: 'latency p99, pooled over rounds (ms)', key: 'latP99', digits: 2, relay: { ratio: 1.5, atLeast: false }, socketio: AT_MOST_1 },
  { label: 'latency p99, worst round (ms)', key: 'latP99Worst', digits: 2, relay: { ratio: 1.5, atLeast: false }, socketio: AT_MOST_1 },
  { label: 'latency p99.9, pooled (ms)', key: 'latP999', digits: 2 },
  { label: 'server CPU per 1,000 msgs at the fixed rate (ms)', key: 'latCpuMsPer1k', digits: 1, relay: { ratio: 1.6, atLeast: false }, socketio: AT_MOST_1 },
  { label: 'room fan-out, deliveries/s', key: 'fanRate', digits: 0 },
  { label: 'room fan-out latency p50 (ms)', key: 'fanP50', digits: 2 },
  { label: 'room fan-out latency p99, pooled (ms)', key: 'fanP99', digits: 2, socketio: AT_MOST_1 },
  { label: 'room fan-out latency p99, worst round (ms)', key: 'fanP99Worst', digits: 2 },
  { label: 'room fan-out CPU per 1,000 deliveries (ms)', key: 'fanCpuMsPer1k', digits: 1, socketio: AT_MOST_1 },
];

const COMPARISONS = [
  { name: 'eph/relay', of: 'ephemeral', against: 'relay', goal: (r: Row) => r.relay },
  { name: 'eph/sio', of: 'ephemeral', against: 'socketio', goal: (r: Row) => r.socketio },
  { name: 'dur/relay-js', of: 'durable', against: 'relay-js', goal: (r: Row) => r.relayJs },
] as const;

export interface Ratios {
  [comparison: string]: Partial<Record<FigureKey, { pooled: number; rounds: number[]; goal?: Goal; verdict: string }>>;
}

export function ratiosOf(results: Map<Target, TargetResults>): Ratios {
  const out: Ratios = {};
  const figures = new Map([...results].map(([k, r]) => [k, figuresOf(r)]));
  for (const cmp of COMPARISONS) {
    const a = results.get(cmp.of);
    const b = results.get(cmp.against);
    out[cmp.name] = {};
    if (!a || !b) continue;
    const rounds = Math.max(a.throughput.length, a.latency.length, a.connect.length, a.fanout.length);
    const perRound = Array.from({ length: rounds }, (_, i) => [roundFigures(a, i), roundFigures(b, i)] as const);
    for (const row of ROWS) {
      const pooled = ratio(figures.get(cmp.of)![row.key], figures.get(cmp.against)![row.key]);
      const goal = cmp.goal(row);
      out[cmp.name]![row.key] = {
        pooled,
        rounds: row.key.endsWith('PerConnKiB') || row.key.endsWith('Worst') ? [] : perRound.map(([fa, fb]) => ratio(fa[row.key], fb[row.key])),
        goal,
        verdict: goal ? verdict(pooled, goal) : '',
      };
    }
  }
  return out;
}

function table(lines: string[][]): string {
  const widths = lines[0]!.map((_, col) => Math.max(...lines.map((l) => (l[col] ?? '').length)));
  return lines
    .map((l) => l.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join('  ').trimEnd())
    .join('\n');
}

const fmt = (v: number | undefined, digits: number) =>
  v === undefined || !Number.isFinite(v) ? 'n/a' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** The main table: figures per target, then each comparison's pooled ratio, goal and verdict. */
export function renderTables(results: Map<Target, TargetResults>, targets: readonly Target[]): string {
  const figures = new Map([...results].map(([k, r]) => [k, figuresOf(r)]));
  const ratios = ratiosOf(results);
  const head = ['', ...targets];
  for (const c of COMPARISONS) head.push(c.name, 'goal', '');
  const lines: string[][] = [head];
  for (const row of ROWS) {
    const line = [row.label, ...targets.map((t) => fmt(figures.get(t)?.[row.key], row.digits))];
    for (const c of COMPARISONS) {
      const r = ratios[c.name]?.[row.key];
      const goal = c.goal(row);
      line.push(r && Number.isFinite(r.pooled) ? `${r.pooled.toFixed(2)}x` : 'n/a', goal ? goalText(goal) : '', r?.verdict ?? '');
    }
    lines.push(line);
  }
  const roundLines: string[][] = [['per-round ratios (min-max)', ...COMPARISONS.map((c) => c.name)]];
  for (const row of ROWS) {
    const cells = COMPARISONS.map((c) => rangeText(ratios[c.name]?.[row.key]?.rounds ?? []));
    if (cells.some(Boolean)) roundLines.push([row.label.trim(), ...cells]);
  }
  return `${table(lines)}\n\n${table(roundLines)}`;
}

/** One line per target: failures, errors, losses, pacing. */
export function renderNotes(results: Map<Target, TargetResults>): string[] {
  const notes: string[] = [];
  for (const [target, res] of results) {
    const failed = sum(res.connect.map((s) => s.failed));
    const degraded = sum(res.connect.map((s) => s.degraded));
    const errors = sum(res.throughput.map((s) => s.errors)) + sum(res.latency.map((s) => s.errors)) + sum(res.fanout.map((s) => s.errors));
    const lost =
      sum(res.throughput.map((s) => s.lost)) +
      sum(res.latency.map((s) => s.measuredExpected - s.measuredReceived)) +
      sum(res.fanout.map((s) => s.measuredExpected - s.measuredReceived));
    const paced = sum(res.throughput.map((s) => s.paced));
    const firstError = [...res.connect, ...res.throughput, ...res.latency, ...res.fanout].find((s) => s.firstError)?.firstError;
    const issues = [
      failed ? `${failed} connects failed` : '',
      degraded ? `${degraded} sessions admitted degraded` : '',
      errors ? `${errors} error frames or closes under load` : '',
      lost ? `${lost} deliveries missing after the drain` : '',
      firstError ? `first error: ${firstError}` : '',
    ].filter(Boolean);
    const subs = res.memory && res.memory.subscriptions ? `${(res.memory.subscriptions / res.memory.sessions).toFixed(2)} NATS subscriptions per idle session; ` : '';
    const pacedText = paced ? `; the pacer held senders back ${paced} times at saturation` : '';
    notes.push(`${target}: ${subs}${issues.length ? issues.join('; ') : 'no failed connects, errors or missing deliveries'}${pacedText}`);
  }
  return notes;
}
