/**
 * `npm run bench:presence`: presence at 10,000 members in one room, with a real nats-server and
 * the real Presence module (src/gateway/presence.ts) of three nodes: A and B in this process, C in
 * a child process that is killed with SIGKILL at the end. A script that prints figures; it
 * asserts nothing.
 *
 * What it leaves out: the WebSockets. A node's `broadcast` here counts the event and stops, where
 * a gateway writes the one encoded frame to each local session of the room: that write is the
 * same per-recipient cost as a chat message's, which `npm run bench` measures.
 *
 *   npm run bench:presence                       # 10,000 members, 200 joins
 *   npm run bench:presence -- 20000 500          # members, joins
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm } from '@nats-io/kv';
import { connectNats, closeNats } from '../src/bus/connection.ts';
import { startNatsServer } from '../src/bus/nats-server.ts';
import { CONTROL_MARK, Presence } from '../src/gateway/presence.ts';
import { createLogger } from '../src/log.ts';
import { subjects } from '../src/subjects.ts';

const ROOM = 'bench-room';

type Listener = (type: string, user: string) => void;

/** One node: a Presence on its own NATS connection, subscribed to the room as a gateway would be. */
async function node(url: string, name: string, listener: Listener = () => {}) {
  const nc: NatsConnection = await connectNats(url, name);
  const presence = new Presence({
    nc,
    nodeId: name,
    log: createLogger({ level: 'warn', destination: process.stderr }),
    broadcast: (_subject, frame, type) => listener(type, (JSON.parse(frame) as { user: string }).user),
  });
  nc.subscribe(subjects.room(ROOM), {
    callback: (_err, msg) => {
      if (msg.data[0] === CONTROL_MARK) presence.onRoomControl(msg.subject, msg.data);
    },
  });
  await nc.flush();
  await presence.start();
  return { nc, presence };
}

async function child(url: string, from: number, count: number): Promise<void> {
  const { presence } = await node(url, 'node-c');
  for (let i = from; i < from + count; i++) presence.add(ROOM, `user-${i}`);
  await presence.query(ROOM);
  process.stdout.write('ready\n');
  // Runs until it is killed.
  setInterval(() => {}, 60_000);
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
const ms = (n: number) => `${n.toFixed(2)} ms`;

/** Resolves when `check` holds, polling every 5 ms; fails after `timeoutMs`. */
async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function main(): Promise<void> {
  const members = Number(process.argv[2] ?? 10_000);
  const joins = Number(process.argv[3] ?? 200);
  const home = await mkdtemp(join(tmpdir(), 'chatgate-bench-presence-'));
  const server = await startNatsServer({ port: -1, jetstreamDir: join(home, 'js') });
  const children: ReturnType<typeof spawn>[] = [];
  const closing: NatsConnection[] = [];
  try {
    const seenByA = new Map<string, number>();
    const a = await node(server.url, 'node-a', (type, user) => seenByA.set(`${type} ${user}`, performance.now()));
    const b = await node(server.url, 'node-b');
    closing.push(a.nc, b.nc);
    const third = Math.floor(members / 3);
    // Node C: a third of the members, in its own process.
    const c = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'child', server.url, String(2 * third), String(members - 2 * third)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(c);
    await new Promise<void>((resolve, reject) => {
      c.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      c.once('exit', (code) => reject(new Error(`node C exited (${code})`)));
    });
    await until(() => a.presence.liveNodes === 2 && b.presence.liveNodes === 2, 10_000, 'nodes see each other');

    let started = performance.now();
    for (let i = 0; i < third; i++) a.presence.add(ROOM, `user-${i}`);
    const syncA = performance.now() - started;
    for (let i = third; i < 2 * third; i++) b.presence.add(ROOM, `user-${i}`);
    const settleStarted = performance.now();
    for (let count = 0; count !== members; count = (await a.presence.query(ROOM)).count) {
      if (performance.now() - settleStarted > 10_000) {
        throw new Error(`A sees ${count} of ${members}: ${JSON.stringify(a.presence.viewOf(ROOM))} B: ${JSON.stringify(b.presence.viewOf(ROOM))}`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    started = performance.now();
    const full = await a.presence.query(ROOM);
    const queryMs = performance.now() - started;
    console.log(`room: ${full.count} members over 3 nodes (A ${third}, B ${third}, C ${members - 2 * third} in a child process)`);
    console.log(`first join on a node in a room of ${members - third}: view built in ${ms(syncA)} (query to the live nodes)`);
    console.log(`presence answer from a node's view (sort ${full.count}, list 1000): ${ms(queryMs)}`);

    // Convergence after a join and a leave: B's first session of a new user → A's event.
    const joinLatency: number[] = [];
    const leaveLatency: number[] = [];
    for (let i = 0; i < joins; i++) {
      const user = `new-${i}`;
      let t0 = performance.now();
      b.presence.add(ROOM, user);
      await until(() => seenByA.has(`joined ${user}`), 5000, `joined ${user}`);
      joinLatency.push(seenByA.get(`joined ${user}`)! - t0);
      t0 = performance.now();
      b.presence.remove(ROOM, user);
      await until(() => seenByA.has(`left ${user}`), 5000, `left ${user}`);
      leaveLatency.push(seenByA.get(`left ${user}`)! - t0);
    }
    console.log(`join → joined on another node (${joins}×, ${members} members): p50 ${ms(percentile(joinLatency, 50))}, p99 ${ms(percentile(joinLatency, 99))}`);
    console.log(`leave → left on another node: p50 ${ms(percentile(leaveLatency, 50))}, p99 ${ms(percentile(leaveLatency, 99))}`);

    // CPU per join/leave: the announcing node and one receiving node, both in this process.
    const rounds = 2000;
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    for (let i = 0; i < rounds; i++) {
      b.presence.add(ROOM, `cpu-${i}`);
      b.presence.remove(ROOM, `cpu-${i}`);
    }
    await until(() => seenByA.has(`left cpu-${rounds - 1}`), 30_000, 'cpu round');
    const cpu = process.cpuUsage(cpu0);
    const perOp = (cpu.user + cpu.system) / (2 * rounds);
    console.log(`CPU per join or leave at ${members} members (announcing node + one receiving node, NATS client work included, socket writes not): ${perOp.toFixed(1)} µs; wall ${ms(performance.now() - wall0)} for ${2 * rounds}`);

    // A second session of a user already there: no bus message, no event.
    const before = seenByA.size;
    b.presence.add(ROOM, `user-${third}`);
    b.presence.remove(ROOM, `user-${third}`);
    console.log(`a second session's join and leave: ${seenByA.size - before} events (0 expected), 0 bus messages`);

    // SIGKILL of node C: every one of its users leaves A's view.
    const cUsers = members - 2 * third;
    const killedAt = performance.now();
    c.kill('SIGKILL');
    await until(() => seenByA.has(`left user-${2 * third}`), 20_000, 'first left after SIGKILL');
    const first = seenByA.get(`left user-${2 * third}`)! - killedAt;
    await until(() => seenByA.has(`left user-${members - 1}`), 20_000, 'last left after SIGKILL');
    const last = seenByA.get(`left user-${members - 1}`)! - killedAt;
    const after = await a.presence.query(ROOM);
    console.log(`SIGKILL of node C (${cUsers} users): first left after ${ms(first)}, all ${cUsers} after ${ms(last)}; room now ${after.count}`);
    console.log('(PRESENCE_HEARTBEAT_MS 2000, PRESENCE_NODE_TIMEOUT_MS 10000: the bound is timeout + one sweep, 11 s)');
    a.presence.stop();
    b.presence.stop();

    // The alternative: JetStream KV, one key per (room, node) holding that node's users. Each join
    // rewrites the node's value; another connection watches the room's keys.
    const writer = (await new Kvm(a.nc).create('bench-presence', { history: 1 }));
    const watcher = await new Kvm(b.nc).open('bench-presence');
    const users = Array.from({ length: third }, (_, i) => `user-${i}`);
    let seen = 0;
    const watch = await watcher.watch({ key: 'room.>' });
    void (async () => {
      for await (const _ of watch) seen += 1;
    })();
    const kvLatency: number[] = [];
    const kvCpu0 = process.cpuUsage();
    const kvRounds = Math.min(joins, 200);
    for (let i = 0; i < kvRounds; i++) {
      users.push(`kv-${i}`);
      const want = seen + 1;
      const t0 = performance.now();
      await writer.put('room.node-a', JSON.stringify(users));
      await until(() => seen >= want, 5000, 'kv watch');
      kvLatency.push(performance.now() - t0);
    }
    const kvCpu = process.cpuUsage(kvCpu0);
    watch.stop();
    const bytes = JSON.stringify(users).length;
    console.log(`JetStream KV instead (one key per room and node, ${bytes} B value per join, ${kvRounds}×): put → watch on another connection p50 ${ms(percentile(kvLatency, 50))}, p99 ${ms(percentile(kvLatency, 99))}; CPU per join (writer + watcher) ${((kvCpu.user + kvCpu.system) / kvRounds).toFixed(1)} µs`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(closing.map((nc) => closeNats(nc)));
    await server.stop();
    await rm(home, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'child') {
  await child(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]));
} else {
  await main();
}
