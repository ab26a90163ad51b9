/**
 * `npm run bench`: chatgate with DELIVERY=durable (the default, column `durable`) and with
 * DELIVERY=ephemeral (column `ephemeral`) against a bare `ws` relay over NATS (bench/relay.ts),
 * side by side in one run, on this machine. A script that prints figures; it asserts nothing.
 *
 *   npm run bench                                        # the default run, about 3 minutes
 *   npm run bench -- --rounds 6 --duration 10 --idle 20000   # longer, steadier
 *   npm run bench -- --cpu-prof /tmp/prof                # + CPU profiles (see --help)
 *   npm run bench -- --heap-snapshot /tmp/heap           # + heap snapshots with the idle sessions open
 *
 * What runs (all on 127.0.0.1, every process stopped at the end, on an error and on SIGINT):
 *   - one nats-server per system (free ports), so neither system's subscriptions touch the other's;
 *   - chatgate: the auth service and two gateway nodes (A, B), each in its own process
 *     (bench/auth-proc.ts, bench/gateway-proc.ts, `--expose-gc`);
 *   - relay: two relay nodes (A, B), each in its own process (bench/relay.ts);
 *   - one or two load generators (bench/loadgen.ts), the same code for both systems.
 *
 * Interleaved rounds. On a shared machine the load of other work drifts by tens of percent within
 * a minute, so every measurement is cut into `--rounds` slices, chatgate and relay back to back in
 * each round, the order alternating (C R, R C, C R, ...). A figure in the table is the total over
 * all slices; a ratio is the median of the per-round ratios (each from two slices seconds apart),
 * with their range beside it, so slow drift cancels and fast drift shows.
 *
 *   idle      `--idle` sessions per system (half on A, half on B), opened in `--rounds` slices with
 *             `--connect-concurrency` handshakes in flight per load generator. Connect rate =
 *             sessions / wall time from the first upgrade to the last welcome (relay: `ready`).
 *             Memory per idle connection = (RSS and heap used after two full GCs, summed over both
 *             nodes, with all the sessions open and settled) minus (the same after a warm-up of
 *             1,000 sessions per load generator, opened and closed), divided by the sessions. Both systems' sessions stay open until
 *             both are measured; each system's processes hold only their own.
 *   throughput  `--pairs` sender/receiver pairs per system, sender on A, receiver on B (every
 *             message crosses nodes through NATS). Closed loop: each sender keeps at most
 *             `--window` messages not yet acknowledged and not yet received. Per slice, after
 *             `--warmup` s, delivered messages are counted over `--duration` s, with the CPU time
 *             (user + system) of both nodes and of nats-server over the same window.
 *   latency   open loop at `--latency-rate` messages/s in total over the same pairs, for
 *             `--latency-duration` s per slice after `--warmup` s; send → receive in the load
 *             generator (sender and receiver of a pair share a process, so one clock), counted from
 *             each message's scheduled send time (no coordinated omission); hdr-histogram.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { loadSigningKeys } from '../src/auth/keys.ts';
import { findNatsServer, startNatsServer, type NatsServer } from '../src/bus/nats-server.ts';
import { ChildProcess } from './control.ts';
import { benchGatewayOptions } from './gateway-options.ts';
import type { ConnectResult, LatencyResult, PumpCounts, SystemKind } from './loadgen.ts';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

const USAGE = `usage: npm run bench -- [options]
  --rounds N                 interleaved chatgate/relay rounds per measurement (default 3)
  --idle N                   idle sessions per system, for connect rate and memory (default 12000)
  --connect-concurrency N    handshakes in flight per load generator (default 100)
  --pairs N                  sender/receiver pairs per system (default 100)
  --window N                 messages in flight per pair, throughput phase (default 10)
  --duration S               throughput measurement per slice, seconds (default 5)
  --warmup S                 before each throughput/latency slice, seconds (default 1)
  --latency-rate N           messages/s in total, latency phase (default 1000)
  --latency-duration S       latency measurement per slice, seconds (default 5)
  --body-bytes N             filler characters in each message body (default 100)
  --loadgens N               load generator processes, 1 or 2 (default 2)
  --only LIST                which systems, of chatgate,ephemeral,relay (ratios need relay); chatgate is DELIVERY=durable
  --phases LIST              which phases to run, of idle,throughput,latency (default all three)
  --cpu-prof DIR             write .cpuprofile files (first round only): node A and chatgate's auth
                             service while the idle sessions connect, nodes A and B over the
                             throughput window; figures of a profiled run are lower
  --heap-snapshot DIR        write .heapsnapshot files of node A of each system, idle sessions open
  --json FILE                also write every slice's figures as JSON`;

type Phase = 'idle' | 'throughput' | 'latency';
const PHASES: Phase[] = ['idle', 'throughput', 'latency'];

interface Options {
  rounds: number;
  idle: number;
  connectConcurrency: number;
  pairs: number;
  window: number;
  durationMs: number;
  warmupMs: number;
  latencyRate: number;
  latencyDurationMs: number;
  bodyBytes: number;
  loadgens: number;
  systems: SystemKind[];
  phases: Set<Phase>;
  cpuProf?: string;
  heapSnapshot?: string;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string', default: '3' },
      idle: { type: 'string', default: '12000' },
      'connect-concurrency': { type: 'string', default: '100' },
      pairs: { type: 'string', default: '100' },
      window: { type: 'string', default: '10' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      'latency-rate': { type: 'string', default: '1000' },
      'latency-duration': { type: 'string', default: '5' },
      'body-bytes': { type: 'string', default: '100' },
      loadgens: { type: 'string', default: '2' },
      only: { type: 'string' },
      phases: { type: 'string', default: PHASES.join(',') },
      'cpu-prof': { type: 'string' },
      'heap-snapshot': { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const fail = (line: string): never => {
    process.stderr.write(`bench: ${line}\n`);
    process.exit(2);
  };
  const num = (name: string, raw: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return n;
  };
  const only = values.only?.split(',').map((k) => k.trim());
  if (only !== undefined && !only.every((k) => ['chatgate', 'ephemeral', 'relay'].includes(k))) {
    fail(`--only is a comma-separated list of chatgate, ephemeral, relay, got ${JSON.stringify(values.only)}`);
  }
  const phases = values.phases.split(',').map((p) => p.trim());
  if (!phases.every((p): p is Phase => (PHASES as string[]).includes(p))) {
    fail(`--phases is a comma-separated list of ${PHASES.join(', ')}, got ${JSON.stringify(values.phases)}`);
  }
  const loadgens = num('loadgens', values.loadgens, 1, 2);
  const rounds = Math.floor(num('rounds', values.rounds, 1, 100));
  return {
    rounds,
    idle: Math.floor(num('idle', values.idle, 2 * rounds * loadgens)),
    connectConcurrency: num('connect-concurrency', values['connect-concurrency'], 1),
    pairs: Math.max(loadgens, Math.floor(num('pairs', values.pairs, 1))),
    window: num('window', values.window, 1),
    durationMs: num('duration', values.duration, 0.5) * 1000,
    warmupMs: num('warmup', values.warmup, 0) * 1000,
    latencyRate: num('latency-rate', values['latency-rate'], 1),
    latencyDurationMs: num('latency-duration', values['latency-duration'], 0.5) * 1000,
    bodyBytes: num('body-bytes', values['body-bytes'], 0, 60_000),
    loadgens,
    systems: only ? (only as SystemKind[]) : (['chatgate', 'ephemeral', 'relay'] as SystemKind[]),
    phases: new Set(phases as Phase[]),
    cpuProf: values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined,
    heapSnapshot: values['heap-snapshot'] ? resolve(values['heap-snapshot']) : undefined,
    json: values.json,
  };
}

const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);

// ---------------------------------------------------------------------------------------------
// The machine

function machine() {
  let nats = 'unknown';
  try {
    nats = execFileSync(findNatsServer(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // Only the label is missing; startNatsServer reports a real problem.
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: `${process.platform} ${release()}`,
    node: process.version,
    nats,
  };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU ms (user + system) a process has used, from /proc (for nats-server, which has no IPC). */
function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1000;
  } catch {
    return Number.NaN; // not Linux: the nats-server row shows n/a
  }
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
const newHistogram = () =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });

// ---------------------------------------------------------------------------------------------
// The systems under test

type NodeProcess = ChildProcess<{ url: string; nodeId: string }>;
type Memory = NodeJS.MemoryUsage;
type Syscalls = { reads: number; writes: number };

interface System {
  kind: SystemKind;
  nats: NatsServer;
  nodes: NodeProcess[];
  urls: string[];
  /** chatgate's auth service. */
  auth?: ChildProcess;
}

/** One slice of one measurement for one system. */
interface ConnectSlice {
  opened: number;
  failed: number;
  degraded: number;
  elapsedMs: number;
  /** CPU ms of the nodes and of chatgate's auth service, per process name. */
  cpuMs: Record<string, number>;
  firstError?: string;
}
interface ThroughputSlice {
  delivered: number;
  seconds: number;
  cpuMs: number[];
  natsCpuMs: number;
  /** CPU of the load generators: the same 2 cores, so part of what limits throughput here. */
  loadgenCpuMs: number;
  syscalls: Syscalls[];
  errors: number;
  lost: number;
  firstError?: string;
}
interface LatencySlice {
  /** Microseconds, hdr-histogram compressed base64. */
  histogram: string;
  p50: number;
  p99: number;
  p999: number;
  lost: number;
}

interface SystemResults {
  connect: ConnectSlice[];
  memory?: { before: Memory[]; after: Memory[]; sessions: number; subscriptions: number };
  throughput: ThroughputSlice[];
  latency: LatencySlice[];
}

/** Figures of one system, over all its slices. */
interface Figures {
  connectRate: number;
  cpuMsPerConnect: number;
  throughput: number;
  p50: number;
  p99: number;
  p999: number;
  cpuMsPer1k: number;
  natsCpuMsPer1k: number;
  loadgenCpuMsPer1k: number;
  rssPerConnKiB: number;
  heapPerConnKiB: number;
}
type FigureKey = keyof Figures;

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const host = machine();
  const startedAt = new Date();
  const load = [loadavg()[0]!];
  const runStarted = performance.now();
  progress(`${host.cpu}, ${host.cores} cores, node ${host.node}, ${host.nats}; load average ${load[0]!.toFixed(2)}`);

  const children: ChildProcess[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      // Clients first, then the nodes, then the auth service they ask (no breaker noise on the way).
      const stop = (c: ChildProcess) => c.stop().catch(() => c.kill());
      const isLoadgen = (c: ChildProcess) => c.name.startsWith('loadgen');
      await Promise.all(children.filter(isLoadgen).map(stop));
      await Promise.all(children.filter((c) => !isLoadgen(c) && c.name !== 'auth').map(stop));
      await Promise.all(children.filter((c) => c.name === 'auth').map(stop));
      for (const step of cleanups.splice(0).reverse()) {
        await step().catch((err: unknown) => progress(`cleanup step failed: ${String(err)}`));
      }
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping every process`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const spawn = <R,>(name: string, entry: string, args: string[]) => {
    const child = new ChildProcess<R>(name, here(entry), { args, nodeFlags: ['--expose-gc'] });
    children.push(child as ChildProcess);
    return child;
  };

  try {
    const home = await mkdtemp(join(tmpdir(), 'chatgate-bench-'));
    cleanups.push(() => rm(home, { recursive: true, force: true }));
    await loadSigningKeys(home); // made once here, so every process reads the same key

    const L = options.loadgens;
    const R = options.rounds;
    const loadgens = Array.from({ length: L }, (_, i) => spawn<{ pid: number }>(`loadgen-${i}`, './loadgen.ts', [home]));
    const lgAll = <T,>(cmd: string, arg?: unknown, timeoutMs?: number) =>
      Promise.all(loadgens.map((lg) => lg.request<T>(cmd, arg, timeoutMs)));

    const systems: System[] = [];
    for (const kind of options.systems) {
      // JetStream for each system (durable delivery stores there; the others leave it idle).
      const jetstreamDir = await mkdtemp(join(tmpdir(), `chatgate-bench-js-${kind}-`));
      cleanups.push(() => rm(jetstreamDir, { recursive: true, force: true }));
      const nats = await startNatsServer({ port: -1, jetstreamDir });
      cleanups.push(() => nats.stop());
      let nodes: NodeProcess[];
      let auth: ChildProcess | undefined;
      if (kind !== 'relay') {
        auth = spawn('auth', './auth-proc.ts', [nats.url, home]);
        await auth.ready;
        const delivery = kind === 'ephemeral' ? 'ephemeral' : 'durable';
        nodes = ['a', 'b'].map((n) => spawn(`gateway-${n}`, './gateway-proc.ts', [nats.url, `gw-${n}`, delivery]));
      } else {
        nodes = ['a', 'b'].map((n) => spawn(`relay-${n}`, './relay.ts', [nats.url, `relay-${n}`]));
      }
      const ready = await Promise.all(nodes.map((n) => n.ready));
      systems.push({ kind, nats, nodes, urls: ready.map((r) => r.url), auth });
    }
    await Promise.all(loadgens.map((l) => l.ready));

    // Users per load generator: warm-up and idle sessions (idle cut into one slice per round),
    // and sender/receiver pairs. Both systems use the same names; their NATS servers differ.
    const share = (total: number, i: number, parts: number) => Math.floor(total / parts) + (i < total % parts ? 1 : 0);
    const users = loadgens.map((_, i) => {
      const idle = Array.from({ length: share(options.idle, i, L) }, (_, k) => `i${i}-${k}`);
      const slices: string[][] = [];
      for (let r = 0, from = 0; r < R; r++) {
        const n = share(idle.length, r, R);
        slices.push(idle.slice(from, from + n));
        from += n;
      }
      return {
        warm: Array.from({ length: 1000 }, (_, k) => `w${i}-${k}`),
        idle: slices,
        pairs: Array.from({ length: share(options.pairs, i, L) }, (_, k) => ({ sender: `s${i}-${k}`, receiver: `r${i}-${k}` })),
      };
    });
    if (options.systems.some((k) => k !== 'relay')) {
      progress('minting tokens');
      await Promise.all(
        loadgens.map((lg, i) =>
          lg.request(
            'mint',
            [...users[i]!.warm, ...users[i]!.idle.flat(), ...users[i]!.pairs.flatMap((p) => [p.sender, p.receiver])],
            600_000,
          ),
        ),
      );
    }

    const all = <T,>(processes: ChildProcess[], cmd: string, arg?: unknown, timeoutMs?: number) =>
      Promise.all(processes.map((n) => n.request<T>(cmd, arg, timeoutMs)));
    const sessionsOn = async (sys: System) => sum(await all<number>(sys.nodes, 'count'));
    const waitForCount = async (sys: System, expected: number, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const total = await sessionsOn(sys);
        if (total === expected) return;
        if (Date.now() > deadline) throw new Error(`${sys.kind}: ${total} sessions on the nodes, expected ${expected}`);
        await sleep(50);
      }
    };
    /** Systems in round r's order: C R, then R C, then C R, ... */
    const order = (r: number) => (r % 2 === 0 ? systems : [...systems].reverse());
    if (options.cpuProf) await mkdir(options.cpuProf, { recursive: true });
    if (options.heapSnapshot) await mkdir(options.heapSnapshot, { recursive: true });

    const results = new Map<SystemKind, SystemResults>(
      options.systems.map((k) => [k, { connect: [], throughput: [], latency: [] }]),
    );

    // ---- idle sessions: connect rate, memory per connection --------------------------------
    if (options.phases.has('idle')) {
      const before = new Map<SystemKind, Memory[]>();
      for (const sys of systems) {
        progress(`${sys.kind}: warm-up connects`);
        await Promise.all(
          loadgens.map((lg, i) =>
            lg.request('connect', { kind: sys.kind, urls: sys.urls, users: users[i]!.warm, concurrency: options.connectConcurrency }),
          ),
        );
        await lgAll('closeIdle', sys.kind, 120_000);
        await waitForCount(sys, 0);
        before.set(sys.kind, await all<Memory>(sys.nodes, 'mem'));
      }
      const opened = new Map<SystemKind, number>(options.systems.map((k) => [k, 0]));
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          const servers = [...sys.nodes, ...(sys.auth ? [sys.auth] : [])];
          const profiled = options.cpuProf && r === 0 ? servers.filter((p) => p !== sys.nodes[1]) : [];
          await all(profiled, 'profileStart');
          const cpu0 = await all<number>(servers, 'cpu');
          const slices = await Promise.all(
            loadgens.map((lg, i) =>
              lg.request<ConnectResult>(
                'connect',
                { kind: sys.kind, urls: sys.urls, users: users[i]!.idle[r]!, concurrency: options.connectConcurrency },
                600_000,
              ),
            ),
          );
          const cpu1 = await all<number>(servers, 'cpu');
          for (const p of profiled) {
            const path = join(options.cpuProf!, `${sys.kind}-${p === sys.auth ? 'auth' : 'a'}-connect.cpuprofile`);
            await p.request('profileStop', path);
            progress(`${sys.kind}: CPU profile of ${p.name} while connecting written to ${path}`);
          }
          const slice: ConnectSlice = {
            opened: sum(slices.map((s) => s.opened)),
            failed: sum(slices.map((s) => s.failed)),
            degraded: sum(slices.map((s) => s.degraded)),
            elapsedMs: Math.max(...slices.map((s) => s.elapsedMs)),
            cpuMs: Object.fromEntries(servers.map((p, i) => [p.name, (cpu1[i]! - cpu0[i]!) / 1000])),
            firstError: slices.find((s) => s.firstError)?.firstError,
          };
          results.get(sys.kind)!.connect.push(slice);
          opened.set(sys.kind, opened.get(sys.kind)! + slice.opened);
          const perConnect = Object.entries(slice.cpuMs).map(([name, ms]) => `${name} ${(ms / slice.opened).toFixed(2)}`);
          progress(
            `round ${r + 1}: ${sys.kind} opened ${slice.opened} sessions at ${((slice.opened / slice.elapsedMs) * 1000).toFixed(0)}/s; ` +
              `CPU ms per connect: ${perConnect.join(', ')}${slice.failed ? `; ${slice.failed} failed: ${slice.firstError}` : ''}`,
          );
        }
      }
      for (const sys of systems) {
        const sessions = opened.get(sys.kind)!;
        await waitForCount(sys, sessions);
        await sleep(1000); // let the handshakes' garbage and timers settle
        const after = await all<Memory>(sys.nodes, 'mem');
        const subscriptions = sum(await all<number>(sys.nodes, 'subscriptions'));
        results.get(sys.kind)!.memory = { before: before.get(sys.kind)!, after, sessions, subscriptions };
        const per = (k: 'rss' | 'heapUsed') => (sum(after.map((m) => m[k])) - sum(before.get(sys.kind)!.map((m) => m[k]))) / sessions / 1024;
        progress(`${sys.kind}: ${sessions} idle sessions; per session RSS ${per('rss').toFixed(2)} KiB, heap ${per('heapUsed').toFixed(2)} KiB`);
        if (options.heapSnapshot) {
          const path = join(options.heapSnapshot, `${sys.kind}-a-idle-${sessions}.heapsnapshot`);
          await sys.nodes[0]!.request('heapSnapshot', path, 600_000);
          progress(`${sys.kind}: heap snapshot of node A written to ${path}`);
        }
      }
      for (const sys of systems) {
        await lgAll('closeIdle', sys.kind, 120_000);
        await waitForCount(sys, 0);
      }
    }

    // ---- throughput at saturation and CPU per message, then latency, over the same pairs ---
    if (options.phases.has('throughput') || options.phases.has('latency')) {
      for (const sys of systems) {
        progress(`${sys.kind}: opening ${options.pairs} sender/receiver pairs`);
        await Promise.all(
          loadgens.map((lg, i) =>
            lg.request('openPairs', { kind: sys.kind, senderUrl: sys.urls[0], receiverUrl: sys.urls[1], pairs: users[i]!.pairs }),
          ),
        );
      }
    }
    if (options.phases.has('throughput')) {
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          await lgAll('pumpStart', { kind: sys.kind, window: options.window, bodyBytes: options.bodyBytes });
          await sleep(options.warmupMs);
          const profiled = options.cpuProf && r === 0;
          if (profiled) await all(sys.nodes, 'profileStart');
          const mark = () =>
            Promise.all([
              all<number>(sys.nodes, 'cpu'),
              all<Syscalls>(sys.nodes, 'syscalls'),
              lgAll<PumpCounts & { cpuMs: number }>('mark'),
              procCpuMs(sys.nats.pid),
              performance.now(),
            ] as const);
          const [cpu0, sys0, marks0, nats0, t0] = await mark();
          await sleep(options.durationMs);
          const [cpu1, sys1, marks1, nats1, t1] = await mark();
          if (profiled) {
            for (const [i, node] of sys.nodes.entries()) {
              const path = join(options.cpuProf!, `${sys.kind}-${'ab'[i]}-throughput.cpuprofile`);
              await node.request('profileStop', path);
              progress(`${sys.kind}: CPU profile of ${node.name} (throughput) written to ${path}`);
            }
          }
          const stopped = await lgAll<PumpCounts>('pumpStop');
          const slice: ThroughputSlice = {
            delivered: sum(marks1.map((m) => m.received)) - sum(marks0.map((m) => m.received)),
            seconds: (t1 - t0) / 1000,
            cpuMs: cpu1.map((c, i) => (c - cpu0[i]!) / 1000),
            natsCpuMs: nats1 - nats0,
            loadgenCpuMs: sum(marks1.map((m) => m.cpuMs)) - sum(marks0.map((m) => m.cpuMs)),
            syscalls: sys1.map((s, i) => ({ reads: s.reads - sys0[i]!.reads, writes: s.writes - sys0[i]!.writes })),
            errors: sum(stopped.map((s) => s.errors + s.closes)),
            lost: sum(stopped.map((s) => s.sent - s.received)),
            firstError: stopped.find((s) => s.firstError)?.firstError,
          };
          results.get(sys.kind)!.throughput.push(slice);
          const perNode = slice.cpuMs.map(
            (ms, i) =>
              `${'AB'[i]} ${((ms / slice.delivered) * 1000).toFixed(1)} ms, ` +
              `${(slice.syscalls[i]!.reads / slice.delivered).toFixed(2)} reads + ${(slice.syscalls[i]!.writes / slice.delivered).toFixed(2)} writes/msg`,
          );
          const perK = (ms: number) => ((ms / slice.delivered) * 1000).toFixed(1);
          progress(
            `round ${r + 1}: ${sys.kind} ${(slice.delivered / slice.seconds).toFixed(0)} msgs/s; CPU ms per 1k: ${perNode.join('; ')}; ` +
              `nats-server ${perK(slice.natsCpuMs)}, load generators ${perK(slice.loadgenCpuMs)}` +
              (slice.errors || slice.lost ? `; ${slice.errors} errors/closes, ${slice.lost} lost (${slice.firstError ?? ''})` : ''),
          );
        }
      }
    }
    if (options.phases.has('latency')) {
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          const slices = await lgAll<LatencyResult>(
            'latency',
            {
              kind: sys.kind,
              rate: options.latencyRate / L,
              warmupMs: options.warmupMs,
              durationMs: options.latencyDurationMs,
              bodyBytes: options.bodyBytes,
            },
            options.warmupMs + options.latencyDurationMs + 60_000,
          );
          const histogram = newHistogram();
          for (const s of slices) histogram.add(hdr.decodeFromCompressedBase64(s.histogram));
          const slice: LatencySlice = {
            histogram: hdr.encodeIntoCompressedBase64(histogram),
            p50: histogram.getValueAtPercentile(50) / 1000,
            p99: histogram.getValueAtPercentile(99) / 1000,
            p999: histogram.getValueAtPercentile(99.9) / 1000,
            lost: sum(slices.map((s) => s.measuredSent - s.measuredReceived)),
          };
          results.get(sys.kind)!.latency.push(slice);
          progress(
            `round ${r + 1}: ${sys.kind} at ${options.latencyRate} msgs/s: p50 ${slice.p50.toFixed(2)} ms, p99 ${slice.p99.toFixed(2)} ms, ` +
              `p99.9 ${slice.p999.toFixed(2)} ms (${histogram.totalCount} samples${slice.lost ? `, ${slice.lost} lost` : ''})`,
          );
        }
      }
    }
    if (options.phases.has('throughput') || options.phases.has('latency')) {
      for (const sys of systems) {
        await lgAll('closePairs', sys.kind, 120_000);
        await waitForCount(sys, 0);
      }
    }

    load.push(loadavg()[0]!);
    const seconds = (performance.now() - runStarted) / 1000;
    process.stdout.write(renderReport(options, host, startedAt, load, seconds, results));
    if (options.json) {
      await writeFile(
        options.json,
        JSON.stringify(
          {
            date: startedAt.toISOString(),
            machine: host,
            load,
            options: { ...options, phases: [...options.phases] },
            figures: Object.fromEntries([...results].map(([k, r]) => [k, figuresOf(r)])),
            ratios: Object.fromEntries(ROWS.map((row) => [row.key, roundRatios(results, row.key)])),
            ephemeralRatios: Object.fromEntries(ROWS.map((row) => [row.key, roundRatios(results, row.key, 'ephemeral')])),
            results: Object.fromEntries(results),
          },
          null,
          2,
        ),
      );
    }
  } finally {
    await cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Figures and ratios

function connectFigures(slices: ConnectSlice[]) {
  const opened = sum(slices.map((s) => s.opened));
  return {
    connectRate: opened / (sum(slices.map((s) => s.elapsedMs)) / 1000),
    cpuMsPerConnect: sum(slices.map((s) => sum(Object.values(s.cpuMs)))) / opened,
  };
}
function throughputFigures(slices: ThroughputSlice[]) {
  const delivered = sum(slices.map((s) => s.delivered));
  return {
    throughput: delivered / sum(slices.map((s) => s.seconds)),
    cpuMsPer1k: (sum(slices.map((s) => sum(s.cpuMs))) / delivered) * 1000,
    natsCpuMsPer1k: (sum(slices.map((s) => s.natsCpuMs)) / delivered) * 1000,
    loadgenCpuMsPer1k: (sum(slices.map((s) => s.loadgenCpuMs)) / delivered) * 1000,
  };
}
function latencyFigures(slices: LatencySlice[]) {
  const histogram = newHistogram();
  for (const s of slices) histogram.add(hdr.decodeFromCompressedBase64(s.histogram));
  return {
    p50: histogram.getValueAtPercentile(50) / 1000,
    p99: histogram.getValueAtPercentile(99) / 1000,
    p999: histogram.getValueAtPercentile(99.9) / 1000,
  };
}

function figuresOf(r: SystemResults): Partial<Figures> {
  const f: Partial<Figures> = {};
  if (r.connect.length) Object.assign(f, connectFigures(r.connect));
  if (r.memory) {
    const { before, after, sessions } = r.memory;
    const per = (k: 'rss' | 'heapUsed') => (sum(after.map((m) => m[k])) - sum(before.map((m) => m[k]))) / sessions / 1024;
    f.rssPerConnKiB = per('rss');
    f.heapPerConnKiB = per('heapUsed');
  }
  if (r.throughput.length) Object.assign(f, throughputFigures(r.throughput));
  if (r.latency.length) Object.assign(f, latencyFigures(r.latency));
  return f;
}

/** `of`/relay per round (each round's slices ran seconds apart), for one figure. */
function roundRatios(results: Map<SystemKind, SystemResults>, key: FigureKey, of: SystemKind = 'chatgate'): number[] {
  const c = results.get(of);
  const r = results.get('relay');
  if (!c || !r) return [];
  if (key === 'rssPerConnKiB' || key === 'heapPerConnKiB') {
    const fc = figuresOf(c)[key];
    const fr = figuresOf(r)[key];
    return fc !== undefined && fr !== undefined ? [fc / fr] : [];
  }
  const ratios: number[] = [];
  for (let i = 0; i < Math.max(c.connect.length, c.throughput.length, c.latency.length); i++) {
    const pick = (res: SystemResults): Partial<Figures> => ({
      ...(res.connect[i] ? connectFigures([res.connect[i]!]) : {}),
      ...(res.throughput[i] ? throughputFigures([res.throughput[i]!]) : {}),
      ...(res.latency[i] ? latencyFigures([res.latency[i]!]) : {}),
    });
    const a = pick(c)[key];
    const b = pick(r)[key];
    if (a !== undefined && b !== undefined && b !== 0) ratios.push(a / b);
  }
  return ratios;
}

// ---------------------------------------------------------------------------------------------
// The table

interface Row {
  label: string;
  key: FigureKey;
  digits: number;
  /** Target on chatgate/relay (ephemeral), and which way is better. */
  target?: { ratio: number; atLeast: boolean };
  /** Target of durable delivery on durable/relay (issue 12). */
  durableTarget?: { ratio: number; atLeast: boolean };
}

const ROWS: Row[] = [
  { label: 'connect rate (authenticated sessions/s)', key: 'connectRate', digits: 0, target: { ratio: 0.6, atLeast: true } },
  { label: '  server CPU per connect, nodes + auth (ms)', key: 'cpuMsPerConnect', digits: 2 },
  {
    label: 'throughput, cross-node 1:1 (msgs/s)',
    key: 'throughput',
    digits: 0,
    target: { ratio: 0.7, atLeast: true },
    durableTarget: { ratio: 0.5, atLeast: true },
  },
  { label: 'latency p50 (ms)', key: 'p50', digits: 2 },
  { label: 'latency p99 (ms)', key: 'p99', digits: 2, target: { ratio: 1.5, atLeast: false }, durableTarget: { ratio: 3, atLeast: false } },
  { label: 'latency p99.9 (ms)', key: 'p999', digits: 2 },
  { label: 'server CPU per 1,000 msgs, both nodes (ms)', key: 'cpuMsPer1k', digits: 1 },
  { label: '  nats-server CPU per 1,000 msgs (ms)', key: 'natsCpuMsPer1k', digits: 1 },
  { label: '  load generator CPU per 1,000 msgs (ms)', key: 'loadgenCpuMsPer1k', digits: 1 },
  { label: 'memory per idle connection, RSS (KiB)', key: 'rssPerConnKiB', digits: 2, target: { ratio: 2, atLeast: false } },
  { label: 'memory per idle connection, heap (KiB)', key: 'heapPerConnKiB', digits: 2, target: { ratio: 2, atLeast: false } },
];

function renderReport(
  options: Options,
  host: ReturnType<typeof machine>,
  startedAt: Date,
  load: number[],
  seconds: number,
  results: Map<SystemKind, SystemResults>,
): string {
  const c = results.get('chatgate');
  const e = results.get('ephemeral');
  const r = results.get('relay');
  const fc = c ? figuresOf(c) : {};
  const fe = e ? figuresOf(e) : {};
  const fr = r ? figuresOf(r) : {};
  const fmt = (v: number | undefined, digits: number) =>
    v === undefined || !Number.isFinite(v) ? 'n/a' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const lines: string[][] = [
    ['', 'durable', 'ephemeral', 'relay', 'durable/relay', 'rounds', 'target', '', 'ephemeral/relay', 'rounds', 'target', ''],
  ];
  /** Median ratio, its per-round range, the target and the verdict, of `of`/relay. */
  const compare = (row: Row, of: SystemKind, goal: Row['target']) => {
    const ratios = roundRatios(results, row.key, of);
    const ratio = ratios.length ? median(ratios) : undefined;
    const range = ratios.length > 1 ? `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}` : '';
    let target = '';
    let verdict = '';
    if (goal) {
      target = `${goal.atLeast ? '>=' : '<='} ${goal.ratio}x`;
      if (ratio !== undefined && Number.isFinite(ratio)) {
        verdict = (goal.atLeast ? ratio >= goal.ratio : ratio <= goal.ratio) ? 'met' : 'NOT MET';
      }
    }
    return [ratio === undefined || !Number.isFinite(ratio) ? 'n/a' : `${ratio.toFixed(2)}x`, range, target, verdict];
  };
  for (const row of ROWS) {
    lines.push([
      row.label,
      fmt(fc[row.key], row.digits),
      fmt(fe[row.key], row.digits),
      fmt(fr[row.key], row.digits),
      ...compare(row, 'chatgate', row.durableTarget),
      ...compare(row, 'ephemeral', row.target),
    ]);
  }
  const widths = lines[0]!.map((_, col) => Math.max(...lines.map((l) => l[col]!.length)));
  const table = lines
    .map((l) => l.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join('  ').trimEnd())
    .join('\n');

  const notes: string[] = [];
  for (const [kind, res] of results) {
    const failed = sum(res.connect.map((s) => s.failed));
    const degraded = sum(res.connect.map((s) => s.degraded));
    const errors = sum(res.throughput.map((s) => s.errors));
    const lost = sum(res.throughput.map((s) => s.lost)) + sum(res.latency.map((s) => s.lost));
    const issues = [
      failed ? `${failed} connects failed` : '',
      degraded ? `${degraded} sessions admitted degraded` : '',
      errors ? `${errors} error frames or closes under load` : '',
      lost ? `${lost} messages lost` : '',
    ].filter(Boolean);
    const subs = res.memory ? `${(res.memory.subscriptions / res.memory.sessions).toFixed(2)} NATS subscriptions per idle session; ` : '';
    notes.push(`${kind}: ${subs}${issues.length ? issues.join('; ') : 'no failed connects, errors or lost messages'}`);
  }
  const runLine =
    `run: ${options.rounds} interleaved rounds (C R, R C, ...); per system ${options.idle} idle sessions ` +
    `(${options.connectConcurrency} handshakes in flight per load generator); ${options.pairs} pairs x window ${options.window}, ` +
    `${options.durationMs / 1000} s per throughput slice; latency at ${options.latencyRate} msgs/s, ${options.latencyDurationMs / 1000} s per slice; ` +
    `warm-up ${options.warmupMs / 1000} s per slice; ${options.bodyBytes}-char bodies; ${options.loadgens} load generator process(es); ${seconds.toFixed(0)} s in all`;
  return [
    '',
    `chatgate (durable = DELIVERY=durable, ephemeral = DELIVERY=ephemeral) vs bare ws relay over NATS - ${startedAt.toISOString()}`,
    `machine: ${host.cpu}, ${host.cores} cores, ${host.memoryGiB} GiB, ${host.kernel}, Node ${host.node}, ${host.nats}`,
    `load average (1 min) at start ${load[0]!.toFixed(2)}, at end ${load[1]!.toFixed(2)}; figures are totals over all rounds, ` +
      `ratios the median of the per-round ratios`,
    runLine,
    `chatgate gateways: limits lifted so the bench is never throttled - handshakesPerIpPerSecond ${benchGatewayOptions.handshakesPerIpPerSecond}, ` +
      `maxConnections ${benchGatewayOptions.maxConnections}, sendsPerSecond and sendBurst ${benchGatewayOptions.limits.sendsPerSecond}; every other option at its default`,
    options.cpuProf ? 'NOTE: a profiled run (first round): its figures are lower than an unprofiled run' : '',
    '',
    table,
    '',
    ...notes,
    '',
  ]
    .filter((l, i, a) => l !== '' || a[i - 1] !== '')
    .join('\n');
}

main().catch((err: unknown) => {
  progress(`failed: ${String((err as Error)?.stack ?? err)}`);
  process.exitCode = 1;
});
