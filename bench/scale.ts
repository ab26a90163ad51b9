/**
 * `npm run bench:scale`: how cost grows. For each target in turn (not interleaved: each row is
 * one target at one size, so compare rows of one run, on a quiet machine if you can):
 *
 *   sessions  idle authenticated sessions are added up to 1,000, 10,000 and 50,000 per node (two
 *             nodes), as far as the open-file limit and memory allow (the output says where it
 *             stopped and why). At each step: memory per session (RSS and heap after GC over both
 *             nodes, minus the same before any idle session), idle CPU (all server processes, per
 *             second per 1,000 sessions: heartbeats, timers), then with those sessions open,
 *             `--users` paired users send both ways across nodes: at `--rate` msgs/s (open loop;
 *             CPU per 1,000 messages and p99), and at saturation (closed loop within the default
 *             send rate; msgs/s and CPU per 1,000 messages).
 *   fan-out   rooms of 10, 100 and 1,000 members (alternating nodes) from a pool of users of
 *             their own, room messages at `--fanout-deliveries` deliveries/s in total (sends/s =
 *             deliveries / (members - 1)): CPU per 1,000 deliveries, p50 and p99.
 *
 * chatgate runs with every default except `maxConnections` (10,000 per node), lifted here because
 * the point is to go past it. `npm run bench:scale` raises the open-file limit first (as root to
 * 200,000; otherwise to the hard limit).
 *
 *   npm run bench:scale                       # ephemeral, relay, socketio; about 10-15 minutes
 *   npm run bench:scale -- --quick            # steps 1,000 and 5,000, short slices
 *   npm run bench:scale -- --targets ephemeral --steps 1000,10000,50000
 */
import { readFileSync } from 'node:fs';
import { freemem, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { loadSigningKeys } from '../src/auth/keys.ts';
import { defaultConnectionLimits } from '../machines/connection.machine.ts';
import { scaleGatewayOptions } from './gateway-options.ts';
import { TARGETS, type ConnectResult, type Counts, type OpenLoopResult, type Target } from './kinds.ts';
import { goalText, pooledPercentileMs, ratio, share, sum } from './stats.ts';
import { Fleet, TARGET_INFO, machine, progress, serverCpuMs, startTarget, type System } from './targets.ts';

const USAGE = `usage: npm run bench:scale -- [options]
  --quick                  steps 1000,5000; 2 s slices; fan-out rooms of 10 and 100
  --targets LIST           of ${TARGETS.join(',')} (default ephemeral,relay,socketio)
  --steps LIST             idle sessions per node at each step (default 1000,10000,50000)
  --users N                paired users sending at each step (default 1000)
  --rate N                 msgs/s in total for the fixed-rate slice (default 2000)
  --rooms LIST             room sizes for the fan-out table (default 10,100,1000)
  --fanout-deliveries N    deliveries/s in total in the fan-out slices (default 10000)
  --duration S             measured seconds per slice (default 5)
  --skip-fanout            sessions table only`;

function openFileLimit(): number {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    return Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? 1024);
  } catch {
    return 1024;
  }
}

interface StepRow {
  target: Target;
  perNode: number;
  connectRate: number;
  rssKiB: number;
  heapKiB: number;
  idleCpuMsPerSecPer1k: number;
  rateCpuMsPer1k: number;
  rateP99: number;
  saturation: number;
  satCpuMsPer1k: number;
  errors: number;
}
interface FanoutRow {
  target: Target;
  members: number;
  rooms: number;
  deliveries: number;
  cpuMsPer1k: number;
  p50: number;
  p99: number;
  missing: number;
}

async function main() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      targets: { type: 'string', default: 'ephemeral,relay,socketio' },
      steps: { type: 'string' },
      users: { type: 'string', default: '1000' },
      rate: { type: 'string', default: '2000' },
      rooms: { type: 'string' },
      'fanout-deliveries': { type: 'string', default: '10000' },
      duration: { type: 'string' },
      'skip-fanout': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const quick = values.quick;
  const targets = values.targets.split(',').map((t) => t.trim()) as Target[];
  if (!targets.every((t) => (TARGETS as readonly string[]).includes(t))) {
    process.stderr.write(`bench: --targets is a list of ${TARGETS.join(', ')}\n`);
    process.exit(2);
  }
  const steps = (values.steps ?? (quick ? '1000,5000' : '1000,10000,50000')).split(',').map(Number);
  const roomSizes = (values.rooms ?? (quick ? '10,100' : '10,100,1000')).split(',').map(Number);
  const users = Number(values.users);
  const rate = Number(values.rate);
  const fanoutDeliveries = Number(values['fanout-deliveries']);
  const durationMs = Number(values.duration ?? (quick ? 2 : 5)) * 1000;
  const L = 2;
  const fdLimit = openFileLimit();
  const host = machine();
  const load = [loadavg()[0]!];
  const startedAt = new Date();
  const runStarted = performance.now();
  progress(`${host.cpu}, ${host.cores} cores; open-file limit ${fdLimit}; load average ${load[0]!.toFixed(2)}`);

  const fleet = new Fleet();
  const stepRows: StepRow[] = [];
  const fanRows: FanoutRow[] = [];
  const stops: string[] = [];
  try {
    const home = await fleet.tempDir('chatgate-bench-scale-');
    await loadSigningKeys(home);
    const loadgens = Array.from({ length: L }, (_, i) => fleet.spawn<{ pid: number }>(`loadgen-${i}`, './loadgen.ts', [home, String(i)]));
    await Promise.all(loadgens.map((l) => l.ready));
    const lgAll = <T,>(cmd: string, arg?: unknown, timeoutMs = 600_000) => Promise.all(loadgens.map((lg) => lg.request<T>(cmd, arg, timeoutMs)));

    // Names: paired users p, idle i (enough for the largest step), fan-out pools per room size.
    const maxStep = Math.max(...steps);
    const pairsPerLg = Math.floor(users / 2 / L);
    const poolPerLg = Math.max(...roomSizes); // one room of the largest size per load generator
    const names = loadgens.map((_, i) => ({
      pairs: Array.from({ length: pairsPerLg }, (_, k) => ({ a: `a${i}-${k}`, b: `b${i}-${k}` })),
      idle: Array.from({ length: maxStep }, (_, k) => `i${i}-${k}`), // 2 nodes x maxStep / 2 load generators
      pools: roomSizes.map((m) => Array.from({ length: poolPerLg / 2 }, (_, k) => ({ a: `m${m}a${i}-${k}`, b: `m${m}b${i}-${k}` }))),
    }));
    progress('minting tokens');
    await Promise.all(
      loadgens.map((lg, i) =>
        lg.request(
          'mint',
          {
            users: [...names[i]!.pairs.flatMap((p) => [p.a, p.b]), ...names[i]!.idle, ...names[i]!.pools.flat().flatMap((p) => [p.a, p.b])],
            rooms: '*',
          },
          1_800_000,
        ),
      ),
    );

    for (const target of targets) {
      progress(`starting ${target}: ${TARGET_INFO[target].servers}`);
      const sys: System = await startTarget(fleet, target, { home, gatewayOptions: scaleGatewayOptions });
      const count = async () => sum(await Promise.all(sys.nodes.map((n) => n.request<number>('count'))));
      const waitForCount = async (expected: number) => {
        const deadline = Date.now() + 120_000;
        while ((await count()) !== expected) {
          if (Date.now() > deadline) throw new Error(`${target}: ${await count()} sessions, expected ${expected}`);
          await sleep(100);
        }
      };
      const mem = () => Promise.all(sys.nodes.map((n) => n.request<NodeJS.MemoryUsage>('mem', undefined, 300_000)));
      const cpuTotal = async () => {
        const c = await serverCpuMs(sys);
        return c.nodes + c.auth + c.broker;
      };
      const before = await mem();
      await Promise.all(loadgens.map((lg, i) => lg.request('openUsers', { target, urls: sys.urls, pairs: names[i]!.pairs }, 600_000)));
      const usersOpen = L * pairsPerLg * 2;
      let idleOpen = 0;
      // A node holds its sessions, a load generator its share of both nodes' plus its users: past
      // the open-file limit, the last step is the most the limit allows (rounded down to 1,000).
      const fdMax = Math.floor((fdLimit - 2000 - pairsPerLg * 2) / 1000) * 1000;
      const plan = steps.filter((n) => n <= fdMax);
      const beyond = steps.filter((n) => n > fdMax);
      if (beyond.length && fdMax > (plan.at(-1) ?? 0)) plan.push(fdMax);
      if (beyond.length) {
        stops.push(
          `${target}: ${beyond.join(', ')} sessions per node not reached: a process may hold ${fdLimit} open files here (ulimit -n; ` +
            `raising it needs root or CAP_SYS_RESOURCE), so the last step is ${fdMax} per node`,
        );
      }
      for (const perNode of plan) {
        const needMiB = ((perNode * 2 * 40) / 1024) * 2; // generous: 40 KiB per session on the server, as much again in the clients
        if (needMiB > freemem() / 2 ** 20) {
          stops.push(`${target}: stopped before ${perNode} sessions per node: needs about ${Math.round(needMiB)} MiB, ${Math.round(freemem() / 2 ** 20)} MiB free`);
          break;
        }
        const add = perNode * 2 - idleOpen;
        const t0 = performance.now();
        const results = await Promise.all(
          loadgens.map((lg, i) =>
            lg.request<ConnectResult>(
              'connect',
              { target, urls: sys.urls, users: names[i]!.idle.slice(idleOpen / L, idleOpen / L + share(add, i, L)), concurrency: 100 },
              1_800_000,
            ),
          ),
        );
        const connectRate = sum(results.map((r) => r.opened)) / ((performance.now() - t0) / 1000);
        const failed = sum(results.map((r) => r.failed));
        if (failed) {
          stops.push(`${target}: ${failed} connects failed at ${perNode} per node (${results.find((r) => r.firstError)?.firstError}); stopped there`);
          break;
        }
        idleOpen += add;
        const degraded = sum(results.map((r) => r.degraded));
        if (degraded) stops.push(`${target}: ${degraded} of the sessions added at ${perNode} per node were admitted degraded (the auth breaker was open)`);
        await waitForCount(idleOpen + usersOpen);
        await sleep(1000);
        const after = await mem();
        const perSession = (k: 'rss' | 'heapUsed') => (sum(after.map((m) => m[k])) - sum(before.map((m) => m[k]))) / (idleOpen + usersOpen) / 1024;
        const c0 = await cpuTotal();
        await sleep(durationMs);
        const idleCpu = (await cpuTotal()) - c0;
        // Fixed rate.
        const r0 = await cpuTotal();
        const lat = await lgAll<OpenLoopResult>('latency', { target, rate: rate / L, warmupMs: 1000, durationMs, bodyBytes: 100 }, durationMs + 70_000);
        const rateCpu = (await cpuTotal()) - r0;
        // Saturation.
        await lgAll('pumpStart', { target, window: 4, bodyBytes: 100 });
        await sleep(1000);
        const s0 = await Promise.all([cpuTotal(), lgAll<Counts>('mark'), performance.now()] as const);
        await sleep(durationMs);
        const s1 = await Promise.all([cpuTotal(), lgAll<Counts>('mark'), performance.now()] as const);
        const stopped = await lgAll<Counts>('pumpStop');
        const delivered = sum(s1[1].map((m) => m.received)) - sum(s0[1].map((m) => m.received));
        const row: StepRow = {
          target,
          perNode,
          connectRate,
          rssKiB: perSession('rss'),
          heapKiB: perSession('heapUsed'),
          idleCpuMsPerSecPer1k: (idleCpu / (durationMs / 1000) / (idleOpen + usersOpen)) * 1000,
          rateCpuMsPer1k: (rateCpu / sum(lat.map((l) => l.received))) * 1000,
          rateP99: pooledPercentileMs(lat.map((l) => l.histogram), 99),
          saturation: delivered / ((s1[2] - s0[2]) / 1000),
          satCpuMsPer1k: ((s1[0] - s0[0]) / delivered) * 1000,
          errors: sum([...lat, ...stopped].map((c) => c.errors + c.closes)),
        };
        stepRows.push(row);
        progress(
          `${target} at ${perNode} sessions per node: RSS ${row.rssKiB.toFixed(2)} KiB, heap ${row.heapKiB.toFixed(2)} KiB per session; ` +
            `idle ${row.idleCpuMsPerSecPer1k.toFixed(2)} ms CPU/s per 1k sessions; ${rate} msgs/s: ${row.rateCpuMsPer1k.toFixed(1)} ms/1k, p99 ${row.rateP99.toFixed(2)} ms; ` +
            `saturation ${row.saturation.toFixed(0)} msgs/s, ${row.satCpuMsPer1k.toFixed(1)} ms/1k${row.errors ? `; ${row.errors} errors` : ''}`,
        );
      }
      await lgAll('closeUsers', target);
      await lgAll('closeIdle', target);
      await waitForCount(0);

      if (!values['skip-fanout']) {
        for (const [s, members] of roomSizes.entries()) {
          const pool = names.map((n) => n.pools[s]!);
          await Promise.all(loadgens.map((lg, i) => lg.request('openUsers', { target, urls: sys.urls, pairs: pool[i] }, 600_000)));
          const roomsPerLg = Math.floor(poolPerLg / members);
          progress(`${target}: ${roomsPerLg * L} rooms of ${members} members joining`);
          await Promise.all(
            loadgens.map((lg, i) =>
              lg.request(
                'joinRooms',
                {
                  target,
                  rooms: Array.from({ length: roomsPerLg }, (_, k) => ({
                    room: `s${members}-${i}-${k}`,
                    members: Array.from({ length: members }, (_, m) => k * members + m),
                  })),
                },
                1_800_000,
              ),
            ),
          );
          const sends = fanoutDeliveries / (members - 1);
          const c0 = await cpuTotal();
          const parts = await lgAll<OpenLoopResult>('fanout', { target, rate: sends / L, warmupMs: 1000, durationMs, bodyBytes: 100 }, durationMs + 70_000);
          const cpu = (await cpuTotal()) - c0;
          const row: FanoutRow = {
            target,
            members,
            rooms: roomsPerLg * L,
            deliveries: sum(parts.map((p) => p.measuredReceived)) / (durationMs / 1000),
            cpuMsPer1k: (cpu / sum(parts.map((p) => p.received))) * 1000,
            p50: pooledPercentileMs(parts.map((p) => p.histogram), 50),
            p99: pooledPercentileMs(parts.map((p) => p.histogram), 99),
            missing: sum(parts.map((p) => p.measuredExpected - p.measuredReceived)),
          };
          fanRows.push(row);
          progress(
            `${target} rooms of ${members}: ${row.deliveries.toFixed(0)} deliveries/s, ${row.cpuMsPer1k.toFixed(1)} ms CPU per 1k deliveries, ` +
              `p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms${row.missing ? `, ${row.missing} missing` : ''}`,
          );
          await lgAll('closeUsers', target);
          await waitForCount(0);
        }
      }
      // This target's processes go now: the next target gets the machine to itself.
      for (const n of [...sys.nodes, ...(sys.auth ? [sys.auth] : [])]) await n.stop();
    }
    load.push(loadavg()[0]!);
    process.stdout.write(render());
  } finally {
    await fleet.cleanup();
  }

  function render(): string {
    const fmt = (v: number, d: number) => (Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
    const table = (lines: string[][]) => {
      const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
      return lines.map((l) => l.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()).join('\n');
    };
    const sessions: string[][] = [
      ['sessions/node', 'target', 'connects/s', 'RSS KiB/sess', 'heap KiB/sess', 'idle CPU ms/s per 1k sess', `CPU ms/1k msgs at ${rate}/s`, `p99 ms at ${rate}/s`, 'saturation msgs/s', 'CPU ms/1k msgs at sat.'],
    ];
    for (const r of stepRows) {
      sessions.push([
        r.perNode.toLocaleString('en-US'),
        r.target,
        fmt(r.connectRate, 0),
        fmt(r.rssKiB, 2),
        fmt(r.heapKiB, 2),
        fmt(r.idleCpuMsPerSecPer1k, 2),
        fmt(r.rateCpuMsPer1k, 1),
        fmt(r.rateP99, 2),
        fmt(r.saturation, 0),
        fmt(r.satCpuMsPer1k, 1),
      ]);
    }
    const ratios: string[][] = [['sessions/node', 'ratio', 'RSS', 'heap', `CPU/1k at ${rate}/s`, 'CPU/1k at sat.', `(goal on memory and CPU: ${goalText({ ratio: 1.6, atLeast: false })} relay)`]];
    for (const perNode of [...new Set(stepRows.map((r) => r.perNode))]) {
      const of = (t: Target) => stepRows.find((r) => r.target === t && r.perNode === perNode);
      const e = of('ephemeral');
      for (const other of ['relay', 'socketio'] as const) {
        const o = of(other);
        if (!e || !o) continue;
        ratios.push([
          perNode.toLocaleString('en-US'),
          `ephemeral/${other}`,
          `${fmt(ratio(e.rssKiB, o.rssKiB), 2)}x`,
          `${fmt(ratio(e.heapKiB, o.heapKiB), 2)}x`,
          `${fmt(ratio(e.rateCpuMsPer1k, o.rateCpuMsPer1k), 2)}x`,
          `${fmt(ratio(e.satCpuMsPer1k, o.satCpuMsPer1k), 2)}x`,
          '',
        ]);
      }
    }
    const fan: string[][] = [['room members', 'target', 'rooms', 'deliveries/s', 'CPU ms/1k deliveries', 'p50 ms', 'p99 ms', 'missing']];
    for (const r of fanRows) {
      fan.push([String(r.members), r.target, String(r.rooms), fmt(r.deliveries, 0), fmt(r.cpuMsPer1k, 1), fmt(r.p50, 2), fmt(r.p99, 2), String(r.missing)]);
    }
    return [
      '',
      `npm run bench:scale - ${startedAt.toISOString()}${quick ? ' (QUICK)' : ''}`,
      `machine: ${host.cpu}, ${host.cores} cores, ${host.memoryGiB} GiB, ${host.kernel}, Node ${host.node}, ${host.nats}, ${host.redis}`,
      `load average (1 min): ${load[0]!.toFixed(2)} at start, ${load[1]!.toFixed(2)} at end; ${((performance.now() - runStarted) / 1000).toFixed(0)} s in all; open-file limit ${fdLimit}`,
      `two nodes per target, targets one after another; ${users} paired users send both ways across nodes within the default send rate ` +
        `(${defaultConnectionLimits.sendsPerSecond}/s each); ${durationMs / 1000} s per slice; CPU of every server process (nodes, auth, broker)`,
      '',
      table(sessions),
      '',
      table(ratios),
      '',
      fanRows.length ? `room fan-out at ${fanoutDeliveries} deliveries/s offered (sends/s = deliveries / (members - 1)), members alternating nodes:` : '',
      fanRows.length ? table(fan) : '',
      '',
      ...stops,
      '',
    ].join('\n');
  }
}

main().catch((err: unknown) => {
  progress(`failed: ${String((err as Error)?.stack ?? err)}`);
  process.exitCode = 1;
});
