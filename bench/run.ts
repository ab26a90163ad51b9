/**
 * `npm run bench`: chatgate (DELIVERY=ephemeral and durable) against a bare ws + NATS relay, a
 * bare ws + JetStream relay, and Socket.IO 4 with its Redis adapter, in one run, on this machine,
 * interleaved round by round. A script that prints figures; it asserts nothing. BENCHMARKS.md says
 * how to run it and read it.
 *
 *   npm run bench                          # the full run, about 15 minutes
 *   npm run bench -- --quick               # the same shape, small and short (about 3 minutes)
 *   npm run bench -- --targets ephemeral,relay,socketio
 *   npm run bench -- --help
 *
 * Phases (each target's sessions stay open until the end of the run; every target has its own
 * broker and server processes; all on 127.0.0.1, every process stopped at the end, on an error
 * and on SIGINT):
 *   idle        `--idle` authenticated sessions per target, half on each node, opened in `--rounds`
 *               slices: connect rate and server CPU per connect; then memory per idle connection
 *               (RSS and heap after GC over both nodes, minus the same after a warm-up). They STAY
 *               OPEN through every later phase.
 *   latency     `--users` paired users open (a on node A, b on node B, each sending to the other);
 *               the first `--latency-users` of them send, both ways across nodes, at
 *               `--latency-rate` msgs/s in total, open loop (counted from each message's scheduled
 *               time: no coordinated omission), one clock per pair; pooled p99 and worst round.
 *   throughput  every paired user sends to its peer, closed loop (`--window` in flight), each
 *               within chatgate's default per-session send rate; CPU of every server process.
 *   fanout      `--fanout-rooms` rooms of `--fanout-members` members (half on each node), room
 *               messages at `--fanout-rate`/s in total, open loop: deliveries, latency, CPU per
 *               1,000 deliveries.
 * Before the first message phase, every target gets 3 s at the latency rate, not measured. Every phase runs `--rounds` rounds; in each round every target runs once, the order reversed
 * every other round. A figure is pooled over all rounds (totals; one histogram of every sample).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { loadSigningKeys } from '../src/auth/keys.ts';
import { defaultConnectionLimits } from '../machines/connection.machine.ts';
import type { ChildProcess } from './control.ts';
import { TARGETS, type ConnectResult, type Counts, type OpenLoopResult, type Target } from './kinds.ts';
import { figuresOf, ratiosOf, renderNotes, renderTables, type Cpu, type OpenLoopSlice, type TargetResults } from './report.ts';
import { encodeHistogram, poolHistograms, share, sum } from './stats.ts';
import { Fleet, TARGET_INFO, machine, progress, serverCpuMs, startTarget, type System } from './targets.ts';

const USAGE = `usage: npm run bench -- [options]
  --quick                    small and short, for iteration: 2 rounds, 3 s slices, 1,000 idle, 200 users
  --targets LIST             of ${TARGETS.join(',')} (default all)
  --phases LIST              of idle,latency,throughput,fanout (default all)
  --rounds N                 interleaved rounds per phase (default 5)
  --idle N                   idle sessions per target, open to the end (default 5000)
  --connect-concurrency N    handshakes in flight per load generator (default 100)
  --users N                  paired users per target, half on each node (default 1000)
  --latency-users N          of those, how many send in the latency phase (default 400)
  --latency-rate N           msgs/s in total, latency phase (default 2000)
  --latency-duration S       measured seconds per latency slice (default 10)
  --window N                 messages in flight per sender, throughput phase (default 4)
  --duration S               measured seconds per throughput slice (default 10)
  --fanout-rooms N           rooms in the fan-out phase (default 10)
  --fanout-members N         members per room (default 100)
  --fanout-rate N            room messages/s in total (default 100)
  --fanout-duration S        measured seconds per fan-out slice (default 5)
  --warmup S                 before each measured slice (default 1)
  --body-bytes N             filler characters in each message body (default 100)
  --loadgens N               load generator processes, 1 or 2 (default 2)
  --cpu-prof DIR             .cpuprofile of node A of each target over the first throughput slice
  --heap-snapshot DIR        .heapsnapshot of node A of each target with the idle sessions open
  --json FILE                also write every slice's figures as JSON`;

type Phase = 'idle' | 'latency' | 'throughput' | 'fanout';
const PHASES: Phase[] = ['idle', 'latency', 'throughput', 'fanout'];

interface Options {
  targets: Target[];
  phases: Set<Phase>;
  rounds: number;
  idle: number;
  connectConcurrency: number;
  users: number;
  latencyUsers: number;
  latencyRate: number;
  latencyDurationMs: number;
  window: number;
  durationMs: number;
  fanoutRooms: number;
  fanoutMembers: number;
  fanoutRate: number;
  fanoutDurationMs: number;
  warmupMs: number;
  bodyBytes: number;
  loadgens: number;
  quick: boolean;
  cpuProf?: string;
  heapSnapshot?: string;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const d = (full: string, short: string) => (quick ? short : full);
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      targets: { type: 'string', default: TARGETS.join(',') },
      phases: { type: 'string', default: PHASES.join(',') },
      rounds: { type: 'string', default: d('5', '2') },
      idle: { type: 'string', default: d('5000', '1000') },
      'connect-concurrency': { type: 'string', default: '100' },
      users: { type: 'string', default: d('1000', '200') },
      'latency-users': { type: 'string', default: d('400', '200') },
      'latency-rate': { type: 'string', default: d('2000', '1000') },
      'latency-duration': { type: 'string', default: d('10', '3') },
      window: { type: 'string', default: '4' },
      duration: { type: 'string', default: d('10', '3') },
      'fanout-rooms': { type: 'string', default: d('10', '2') },
      'fanout-members': { type: 'string', default: d('100', '50') },
      'fanout-rate': { type: 'string', default: d('100', '50') },
      'fanout-duration': { type: 'string', default: d('5', '2') },
      warmup: { type: 'string', default: '1' },
      'body-bytes': { type: 'string', default: '100' },
      loadgens: { type: 'string', default: '2' },
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
  const list = <T extends string>(name: string, raw: string, allowed: readonly T[]): T[] => {
    const items = raw.split(',').map((p) => p.trim());
    if (!items.every((p): p is T => (allowed as readonly string[]).includes(p))) {
      fail(`--${name} is a comma-separated list of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
    }
    return items as T[];
  };
  const loadgens = num('loadgens', values.loadgens, 1, 2);
  const rounds = Math.floor(num('rounds', values.rounds, 1, 100));
  const users = Math.floor(num('users', values.users, 2 * loadgens));
  const o: Options = {
    targets: TARGETS.filter((t) => list('targets', values.targets, TARGETS).includes(t)),
    phases: new Set(list('phases', values.phases, PHASES)),
    rounds,
    idle: Math.floor(num('idle', values.idle, 2 * rounds * loadgens)),
    connectConcurrency: num('connect-concurrency', values['connect-concurrency'], 1),
    users,
    latencyUsers: Math.floor(num('latency-users', values['latency-users'], 2 * loadgens, users)),
    latencyRate: num('latency-rate', values['latency-rate'], 1),
    latencyDurationMs: num('latency-duration', values['latency-duration'], 0.5) * 1000,
    window: Math.floor(num('window', values.window, 1, defaultConnectionLimits.sendBurst)),
    durationMs: num('duration', values.duration, 0.5) * 1000,
    fanoutRooms: Math.floor(num('fanout-rooms', values['fanout-rooms'], loadgens)),
    fanoutMembers: Math.floor(num('fanout-members', values['fanout-members'], 2)),
    fanoutRate: num('fanout-rate', values['fanout-rate'], 1),
    fanoutDurationMs: num('fanout-duration', values['fanout-duration'], 0.5) * 1000,
    warmupMs: num('warmup', values.warmup, 0) * 1000,
    bodyBytes: num('body-bytes', values['body-bytes'], 0, 60_000),
    loadgens,
    quick,
    cpuProf: values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined,
    heapSnapshot: values['heap-snapshot'] ? resolve(values['heap-snapshot']) : undefined,
    json: values.json,
  };
  // Each load generator's users must hold its rooms, and each sender its share of the latency rate.
  const usersHere = 2 * Math.floor(users / 2 / loadgens);
  if (Math.ceil(o.fanoutRooms / loadgens) * o.fanoutMembers > usersHere) {
    fail(`--fanout-rooms x --fanout-members needs more --users: each load generator has ${usersHere} users`);
  }
  const perSender = o.latencyRate / o.latencyUsers;
  if (perSender > defaultConnectionLimits.sendsPerSecond * 0.95) {
    fail(`--latency-rate / --latency-users is ${perSender.toFixed(1)} msgs/s per sender, over the default send rate (${defaultConnectionLimits.sendsPerSecond}/s)`);
  }
  return o;
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const host = machine();
  const startedAt = new Date();
  const load = [loadavg()[0]!];
  const runStarted = performance.now();
  progress(`${host.cpu}, ${host.cores} cores, node ${host.node}, ${host.nats}, ${host.redis}; load average ${load[0]!.toFixed(2)}`);
  const fleet = new Fleet();
  try {
    const home = await fleet.tempDir('chatgate-bench-');
    await loadSigningKeys(home); // made once here, so every process reads the same key
    const L = options.loadgens;
    const R = options.rounds;
    const loadgens = Array.from({ length: L }, (_, i) => fleet.spawn<{ pid: number }>(`loadgen-${i}`, './loadgen.ts', [home, String(i)]));
    const lgAll = <T,>(cmd: string, arg?: unknown, timeoutMs?: number) => Promise.all(loadgens.map((lg) => lg.request<T>(cmd, arg, timeoutMs)));
    const all = <T,>(processes: ChildProcess[], cmd: string, arg?: unknown, timeoutMs?: number) =>
      Promise.all(processes.map((n) => n.request<T>(cmd, arg, timeoutMs)));

    const systems: System[] = [];
    for (const target of options.targets) {
      progress(`starting ${target}: ${TARGET_INFO[target].servers}`);
      systems.push(await startTarget(fleet, target, { home }));
    }
    await Promise.all(loadgens.map((l) => l.ready));

    // Users per load generator: warm-up, idle (one slice per round), pairs and rooms. Every
    // target uses the same names and tokens; their brokers differ.
    const users = loadgens.map((_, i) => {
      const idle = Array.from({ length: share(options.idle, i, L) }, (_, k) => `i${i}-${k}`);
      const slices: string[][] = [];
      for (let r = 0, from = 0; r < R; r++) {
        const n = share(idle.length, r, R);
        slices.push(idle.slice(from, from + n));
        from += n;
      }
      const pairs = Array.from({ length: Math.floor(options.users / 2 / L) }, (_, k) => ({ a: `a${i}-${k}`, b: `b${i}-${k}` }));
      const roomsHere = share(options.fanoutRooms, i, L);
      return {
        warm: Array.from({ length: 500 }, (_, k) => `w${i}-${k}`),
        idle: slices,
        pairs,
        latencyLinks: share(options.latencyUsers, i, L),
        rooms: Array.from({ length: roomsHere }, (_, k) => ({
          room: `f${i}-${k}`,
          members: Array.from({ length: options.fanoutMembers }, (_, m) => k * options.fanoutMembers + m),
        })),
        fanoutRate: (options.fanoutRate * roomsHere) / options.fanoutRooms,
      };
    });
    progress('minting tokens');
    await Promise.all(
      loadgens.map((lg, i) =>
        lg.request('mint', { users: [...users[i]!.warm, ...users[i]!.idle.flat(), ...users[i]!.pairs.flatMap((p) => [p.a, p.b])], rooms: '*' }, 600_000),
      ),
    );

    const sessionsOn = async (sys: System) => sum(await all<number>(sys.nodes, 'count'));
    const waitForCount = async (sys: System, expected: number, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const total = await sessionsOn(sys);
        if (total === expected) return;
        if (Date.now() > deadline) throw new Error(`${sys.target}: ${total} sessions on the nodes, expected ${expected}`);
        await sleep(50);
      }
    };
    const order = (r: number) => (r % 2 === 0 ? systems : [...systems].reverse());
    const cpuDelta = (a: Cpu, b: Cpu): Cpu => ({ nodes: b.nodes - a.nodes, auth: b.auth - a.auth, broker: b.broker - a.broker });
    if (options.cpuProf) await mkdir(options.cpuProf, { recursive: true });
    if (options.heapSnapshot) await mkdir(options.heapSnapshot, { recursive: true });
    const results = new Map<Target, TargetResults>(options.targets.map((k) => [k, { connect: [], throughput: [], latency: [], fanout: [] }]));

    // ---- idle sessions: connect rate, memory per connection; they stay open ------------------
    const idleOpen = new Map<Target, number>(options.targets.map((t) => [t, 0]));
    if (options.phases.has('idle')) {
      const before = new Map<Target, NodeJS.MemoryUsage[]>();
      for (const sys of systems) {
        progress(`${sys.target}: warm-up connects`);
        await Promise.all(
          loadgens.map((lg, i) => lg.request('connect', { target: sys.target, urls: sys.urls, users: users[i]!.warm, concurrency: options.connectConcurrency }, 600_000)),
        );
        await lgAll('closeIdle', sys.target, 120_000);
        await waitForCount(sys, 0);
        before.set(sys.target, await all<NodeJS.MemoryUsage>(sys.nodes, 'mem'));
      }
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          const cpu0 = await serverCpuMs(sys);
          const slices = await Promise.all(
            loadgens.map((lg, i) =>
              lg.request<ConnectResult>('connect', { target: sys.target, urls: sys.urls, users: users[i]!.idle[r]!, concurrency: options.connectConcurrency }, 600_000),
            ),
          );
          const cpu = cpuDelta(cpu0, await serverCpuMs(sys));
          const slice = {
            opened: sum(slices.map((s) => s.opened)),
            failed: sum(slices.map((s) => s.failed)),
            degraded: sum(slices.map((s) => s.degraded)),
            elapsedMs: Math.max(...slices.map((s) => s.elapsedMs)),
            cpu,
            firstError: slices.find((s) => s.firstError)?.firstError,
          };
          results.get(sys.target)!.connect.push(slice);
          idleOpen.set(sys.target, idleOpen.get(sys.target)! + slice.opened);
          progress(
            `round ${r + 1}: ${sys.target} opened ${slice.opened} sessions at ${((slice.opened / slice.elapsedMs) * 1000).toFixed(0)}/s, ` +
              `${((cpu.nodes + cpu.auth + cpu.broker) / slice.opened).toFixed(2)} ms server CPU each` +
              (slice.failed ? `; ${slice.failed} failed: ${slice.firstError}` : ''),
          );
        }
      }
      for (const sys of systems) {
        const sessions = idleOpen.get(sys.target)!;
        await waitForCount(sys, sessions);
        await sleep(1000); // let the handshakes' garbage and timers settle
        const after = await all<NodeJS.MemoryUsage>(sys.nodes, 'mem');
        const subscriptions = sum(await all<number>(sys.nodes, 'subscriptions'));
        results.get(sys.target)!.memory = { before: before.get(sys.target)!, after, sessions, subscriptions };
        const f = figuresOf(results.get(sys.target)!);
        progress(`${sys.target}: ${sessions} idle sessions open; per session RSS ${f.rssPerConnKiB.toFixed(2)} KiB, heap ${f.heapPerConnKiB.toFixed(2)} KiB`);
        if (options.heapSnapshot) {
          const path = join(options.heapSnapshot, `${sys.target}-a-idle-${sessions}.heapsnapshot`);
          await sys.nodes[0]!.request('heapSnapshot', path, 600_000);
          progress(`${sys.target}: heap snapshot of node A written to ${path}`);
        }
      }
    }

    // ---- paired users (and rooms) for the message phases, idle sessions still open ----------
    const messagePhases = ['latency', 'throughput', 'fanout'].some((p) => options.phases.has(p as Phase));
    if (messagePhases) {
      for (const sys of systems) {
        progress(`${sys.target}: opening ${options.users} paired users (${idleOpen.get(sys.target)} idle sessions stay open)`);
        await Promise.all(loadgens.map((lg, i) => lg.request('openUsers', { target: sys.target, urls: sys.urls, pairs: users[i]!.pairs }, 600_000)));
        if (options.phases.has('fanout')) {
          await Promise.all(loadgens.map((lg, i) => lg.request('joinRooms', { target: sys.target, rooms: users[i]!.rooms }, 600_000)));
        }
      }
    }

    // One unmeasured slice per target at the latency rate before any measured one: the first
    // messages through a process meet cold code and new connections (one target's first measured
    // slice once showed a p50 of 400 ms that no later round repeated).
    if (messagePhases) {
      for (const sys of systems) {
        await Promise.all(
          loadgens.map((lg, i) =>
            lg.request(
              'latency',
              { target: sys.target, rate: (options.latencyRate * users[i]!.latencyLinks) / options.latencyUsers, links: users[i]!.latencyLinks, warmupMs: 0, durationMs: 3000, bodyBytes: options.bodyBytes },
              70_000,
            ),
          ),
        );
      }
      progress('every target warmed up (3 s at the latency rate, not measured)');
    }

    /** One open-loop slice (latency or fan-out) of one target, with the server CPU over it. */
    const openLoopSlice = async (sys: System, cmd: 'latency' | 'fanout', args: (i: number) => object, durationMs: number) => {
      const t0 = performance.now();
      const cpu0 = await serverCpuMs(sys);
      const parts = await Promise.all(loadgens.map((lg, i) => lg.request<OpenLoopResult>(cmd, { target: sys.target, ...args(i) }, options.warmupMs + durationMs + 60_000)));
      const cpu = cpuDelta(cpu0, await serverCpuMs(sys));
      const slice: OpenLoopSlice = {
        histogram: encodeHistogram(poolHistograms(parts.map((p) => p.histogram))),
        measuredSent: sum(parts.map((p) => p.measuredSent)),
        measuredExpected: sum(parts.map((p) => p.measuredExpected)),
        measuredReceived: sum(parts.map((p) => p.measuredReceived)),
        delivered: sum(parts.map((p) => p.received)),
        cpu,
        seconds: (performance.now() - t0) / 1000,
        errors: sum(parts.map((p) => p.errors + p.closes)),
        firstError: parts.find((p) => p.firstError)?.firstError,
      };
      return slice;
    };
    const describe = (s: OpenLoopSlice) => {
      const f = figuresOf({ connect: [], throughput: [], latency: [s], fanout: [] });
      const missing = s.measuredExpected - s.measuredReceived;
      return (
        `p50 ${f.latP50.toFixed(2)} ms, p99 ${f.latP99.toFixed(2)} ms, p99.9 ${f.latP999.toFixed(2)} ms, ` +
        `${f.latCpuMsPer1k.toFixed(1)} ms server CPU per 1k (${s.measuredReceived} samples` +
        `${missing ? `, ${missing} missing` : ''}${s.errors ? `, ${s.errors} errors: ${s.firstError}` : ''})`
      );
    };

    if (options.phases.has('latency')) {
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          const slice = await openLoopSlice(
            sys,
            'latency',
            (i) => ({
              rate: (options.latencyRate * users[i]!.latencyLinks) / options.latencyUsers,
              links: users[i]!.latencyLinks,
              warmupMs: options.warmupMs,
              durationMs: options.latencyDurationMs,
              bodyBytes: options.bodyBytes,
            }),
            options.latencyDurationMs,
          );
          results.get(sys.target)!.latency.push(slice);
          progress(`round ${r + 1}: ${sys.target} latency at ${options.latencyRate} msgs/s: ${describe(slice)}`);
        }
      }
    }

    if (options.phases.has('throughput')) {
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          await lgAll('pumpStart', { target: sys.target, window: options.window, bodyBytes: options.bodyBytes });
          await sleep(options.warmupMs);
          const profiled = options.cpuProf && r === 0;
          if (profiled) await sys.nodes[0]!.request('profileStart');
          const mark = () => Promise.all([serverCpuMs(sys), lgAll<Counts & { cpuMs: number }>('mark'), performance.now()] as const);
          const [cpu0, marks0, t0] = await mark();
          await sleep(options.durationMs);
          const [cpu1, marks1, t1] = await mark();
          if (profiled) {
            const path = join(options.cpuProf!, `${sys.target}-a-throughput.cpuprofile`);
            await sys.nodes[0]!.request('profileStop', path);
            progress(`${sys.target}: CPU profile of node A (throughput) written to ${path}`);
          }
          const stopped = await lgAll<Counts>('pumpStop');
          const slice = {
            delivered: sum(marks1.map((m) => m.received)) - sum(marks0.map((m) => m.received)),
            seconds: (t1 - t0) / 1000,
            cpu: cpuDelta(cpu0, cpu1),
            loadgenCpuMs: sum(marks1.map((m) => m.cpuMs)) - sum(marks0.map((m) => m.cpuMs)),
            errors: sum(stopped.map((s) => s.errors + s.closes)),
            lost: sum(stopped.map((s) => s.sent - s.received)),
            paced: sum(marks1.map((m) => m.paced)) - sum(marks0.map((m) => m.paced)),
            firstError: stopped.find((s) => s.firstError)?.firstError,
          };
          results.get(sys.target)!.throughput.push(slice);
          const f = figuresOf({ connect: [], throughput: [slice], latency: [], fanout: [] });
          progress(
            `round ${r + 1}: ${sys.target} ${f.throughput.toFixed(0)} msgs/s; server CPU per 1k ${f.cpuMsPer1k.toFixed(1)} ms ` +
              `(nodes ${f.nodesCpuMsPer1k.toFixed(1)}, auth ${f.authCpuMsPer1k.toFixed(1)}, ${sys.broker.name} ${f.brokerCpuMsPer1k.toFixed(1)}), ` +
              `load generators ${f.loadgenCpuMsPer1k.toFixed(1)}` +
              (slice.paced ? `; paced ${slice.paced}` : '') +
              (slice.errors || slice.lost ? `; ${slice.errors} errors/closes, ${slice.lost} lost (${slice.firstError ?? ''})` : ''),
          );
        }
      }
    }

    if (options.phases.has('fanout')) {
      for (let r = 0; r < R; r++) {
        for (const sys of order(r)) {
          const slice = await openLoopSlice(
            sys,
            'fanout',
            (i) => ({ rate: users[i]!.fanoutRate, warmupMs: options.warmupMs, durationMs: options.fanoutDurationMs, bodyBytes: options.bodyBytes }),
            options.fanoutDurationMs,
          );
          results.get(sys.target)!.fanout.push(slice);
          progress(`round ${r + 1}: ${sys.target} fan-out ${(slice.delivered / slice.seconds).toFixed(0)} deliveries/s: ${describe(slice)}`);
        }
      }
    }

    for (const sys of systems) {
      await lgAll('closeUsers', sys.target, 120_000);
      await lgAll('closeIdle', sys.target, 120_000);
    }
    load.push(loadavg()[0]!);
    const seconds = (performance.now() - runStarted) / 1000;
    process.stdout.write(render(options, host, startedAt, load, seconds, results));
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
            ratios: ratiosOf(results),
            results: Object.fromEntries(results),
          },
          null,
          2,
        ),
      );
    }
  } finally {
    await fleet.cleanup();
  }
}

function render(
  options: Options,
  host: ReturnType<typeof machine>,
  startedAt: Date,
  load: number[],
  seconds: number,
  results: Map<Target, TargetResults>,
): string {
  const s = (ms: number) => `${ms / 1000} s`;
  const run = [
    `${options.quick ? 'QUICK RUN (--quick: for iteration, not for the record); ' : ''}${options.rounds} interleaved rounds per phase; ` +
      `${seconds.toFixed(0)} s in all; ${options.loadgens} load generator process(es)`,
    `idle: ${options.idle} authenticated sessions per target, open to the end of the run, ${options.connectConcurrency} handshakes in flight per load generator`,
    `latency: ${options.latencyUsers} of ${options.users} paired users send both ways across nodes, ${options.latencyRate} msgs/s in total ` +
      `(${(options.latencyRate / options.latencyUsers).toFixed(1)}/s each), ${s(options.latencyDurationMs)} measured per slice`,
    `throughput: ${options.users} users send both ways across nodes, closed loop, window ${options.window}, each within the default ` +
      `per-session rate (${defaultConnectionLimits.sendsPerSecond}/s), ${s(options.durationMs)} measured per slice`,
    `fan-out: ${options.fanoutRooms} rooms x ${options.fanoutMembers} members (alternating nodes), ${options.fanoutRate} room msgs/s in total, ${s(options.fanoutDurationMs)} measured per slice`,
    `warm-up ${s(options.warmupMs)} per slice; ${options.bodyBytes}-char bodies; every chatgate option at its default (no limit lifted)`,
  ];
  const targets = [...results.keys()];
  // Every sender keeps within the default rate, so the users cap what the throughput phase can show.
  const cap = 2 * Math.floor(options.users / 2 / options.loadgens) * options.loadgens * defaultConnectionLimits.sendsPerSecond * 0.95;
  const capped = targets.filter((t) => figuresOf(results.get(t)!).throughput >= 0.9 * cap);
  if (options.phases.has('throughput')) {
    run.push(
      `throughput cap from the send rate: ${Math.round(cap)} msgs/s (users x 95 % of ${defaultConnectionLimits.sendsPerSecond}/s)` +
        (capped.length ? `; WARNING: ${capped.join(', ')} reached 90 % of it, so their throughput is a floor: run with more --users` : '; no target came near it'),
    );
  }
  return [
    '',
    `npm run bench - ${startedAt.toISOString()}`,
    `machine: ${host.cpu}, ${host.cores} cores, ${host.memoryGiB} GiB, ${host.kernel}, Node ${host.node}, ${host.nats}, ${host.redis}`,
    `load average (1 min): ${load[0]!.toFixed(2)} at start, ${load[1]!.toFixed(2)} at end`,
    ...run,
    'targets:',
    ...targets.map((t) => `  ${t.padEnd(9)} ${TARGET_INFO[t].label}; ${TARGET_INFO[t].verifies}; servers: ${TARGET_INFO[t].servers}`),
    'figures are pooled over all rounds (totals; p99 from one histogram of every sample); ratios are of the pooled figures;',
    'goals from issue 15 (the Socket.IO goals other than throughput are the title\'s "ahead of Socket.IO on every figure")',
    options.cpuProf ? 'NOTE: a profiled run (first throughput round): its figures are lower than an unprofiled run' : '',
    '',
    renderTables(results, targets),
    '',
    ...renderNotes(results),
    '',
  ]
    .filter((l, i, a) => l !== '' || a[i - 1] !== '')
    .join('\n');
}

main().catch((err: unknown) => {
  progress(`failed: ${String((err as Error)?.stack ?? err)}`);
  process.exitCode = 1;
});
