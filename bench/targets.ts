/**
 * The bench's processes: `Fleet` starts children (gateways, relays, Socket.IO nodes, the auth
 * service, load generators), brokers (nats-server, redis-server) and temporary directories, and
 * stops every one of them at the end, on an error and on SIGINT/SIGTERM. `startTarget` starts one
 * target's servers (see `TARGET_INFO` for what each is and verifies).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNatsServer, startNatsServer } from '../src/bus/nats-server.ts';
import { ChildProcess } from './control.ts';
import type { Target } from './kinds.ts';
import { findRedisServer, startRedisServer } from './redis.ts';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

/** What each target is, what it checks per connection, and which processes serve it. */
export const TARGET_INFO: Record<Target, { label: string; verifies: string; servers: string }> = {
  ephemeral: {
    label: 'chatgate, DELIVERY=ephemeral (core NATS)',
    verifies: 'JWT verified by the auth service over NATS (ES256, claims, revocations), an XState actor per session, every default limit',
    servers: '2 gateways + auth service + nats-server',
  },
  durable: {
    label: 'chatgate, DELIVERY=durable (JetStream, acked once stored)',
    verifies: 'as ephemeral',
    servers: '2 gateways + auth service + nats-server (JetStream)',
  },
  relay: {
    label: 'bare ws + NATS relay (bench/relay.ts), acked after a NATS flush',
    verifies: 'JWT verified locally with jose (ES256, iss, aud, sub/exp/iat); no revocations, limits or state machine',
    servers: '2 relay nodes + nats-server',
  },
  'relay-js': {
    label: 'bare ws + JetStream relay, acked on the PubAck',
    verifies: 'as relay',
    servers: '2 relay nodes + nats-server (JetStream)',
  },
  socketio: {
    label: 'Socket.IO 4 + @socket.io/redis-adapter (bench/socketio-node.ts)',
    verifies: 'JWT verified locally with jose in a namespace middleware (as relay); rooms via socket.join, a room per user',
    servers: '2 Socket.IO nodes + redis-server',
  },
};

export type NodeProcess = ChildProcess<{ url: string; nodeId: string }>;

export interface System {
  target: Target;
  nodes: NodeProcess[];
  urls: string[];
  /** chatgate's auth service. */
  auth?: ChildProcess;
  /** nats-server or redis-server. */
  broker: { name: 'nats-server' | 'redis-server'; pid: number };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU ms (user + system) a process has used, from /proc (for the brokers, which have no IPC). */
export function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1000;
  } catch {
    return Number.NaN; // not Linux: the broker's CPU shows n/a
  }
}

/** RSS in bytes from /proc (the brokers). */
export function procRssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? Number.NaN) * 1024;
  } catch {
    return Number.NaN;
  }
}

/** CPU ms so far of every server process of a system, by role. */
export async function serverCpuMs(sys: System): Promise<{ nodes: number; auth: number; broker: number }> {
  const [nodes, auth] = await Promise.all([
    Promise.all(sys.nodes.map((n) => n.request<number>('cpu'))),
    sys.auth ? sys.auth.request<number>('cpu') : Promise.resolve(0),
  ]);
  return { nodes: nodes.reduce((a, b) => a + b, 0) / 1000, auth: auth / 1000, broker: procCpuMs(sys.broker.pid) };
}

export function machine() {
  const version = (bin: () => string, args: string[]) => {
    try {
      return execFileSync(bin(), args, { encoding: 'utf8' }).trim().split('\n')[0]!;
    } catch {
      return 'not found';
    }
  };
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: `${process.platform} ${release()}`,
    node: process.version,
    nats: version(findNatsServer, ['--version']),
    redis: version(findRedisServer, ['--version']).replace(/ sha=.*$/, ''),
  };
}

export const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);

export class Fleet {
  readonly children: ChildProcess[] = [];
  readonly #cleanups: Array<() => Promise<unknown>> = [];
  #cleaning: Promise<void> | undefined;

  constructor() {
    const onSignal = (signal: NodeJS.Signals) => {
      progress(`${signal}: stopping every process`);
      void this.cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  spawn<R>(name: string, entry: string, args: string[]): ChildProcess<R> {
    const child = new ChildProcess<R>(name, here(entry), { args, nodeFlags: ['--expose-gc'] });
    this.children.push(child as ChildProcess);
    return child;
  }

  onCleanup(step: () => Promise<unknown>): void {
    this.#cleanups.push(step);
  }

  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    this.onCleanup(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Clients first, then the nodes, then the auth services they ask, then brokers and directories. Idempotent. */
  cleanup(): Promise<void> {
    return (this.#cleaning ??= (async () => {
      const stop = (c: ChildProcess) => c.stop().catch(() => c.kill());
      const isLoadgen = (c: ChildProcess) => c.name.startsWith('loadgen');
      const isAuth = (c: ChildProcess) => c.name.endsWith('auth');
      await Promise.all(this.children.filter(isLoadgen).map(stop));
      await Promise.all(this.children.filter((c) => !isLoadgen(c) && !isAuth(c)).map(stop));
      await Promise.all(this.children.filter(isAuth).map(stop));
      for (const step of this.#cleanups.splice(0).reverse()) {
        await step().catch((err: unknown) => progress(`cleanup step failed: ${String(err)}`));
      }
    })());
  }
}

export interface StartOptions {
  home: string;
  /** Gateway nodes / relay nodes / Socket.IO nodes. @default 2 */
  nodes?: number;
  /** chatgate gateway options beyond the defaults (bench/gateway-options.ts). */
  gatewayOptions?: object;
}

/** Starts one target's broker and servers; every process is the fleet's to stop. */
export async function startTarget(fleet: Fleet, target: Target, options: StartOptions): Promise<System> {
  const count = options.nodes ?? 2;
  const ids = Array.from({ length: count }, (_, i) => 'abcdefgh'[i]!);
  let nodes: NodeProcess[];
  let auth: ChildProcess | undefined;
  let broker: System['broker'];
  if (target === 'socketio') {
    const redis = await startRedisServer();
    fleet.onCleanup(() => redis.stop());
    broker = { name: 'redis-server', pid: redis.pid };
    // One after another: each waits until its adapter's pattern subscription is counted.
    nodes = [];
    for (const n of ids) {
      const node = fleet.spawn<{ url: string; nodeId: string }>(`${target}-${n}`, './socketio-node.ts', [redis.url, `sio-${n}`, options.home]);
      await node.ready;
      nodes.push(node);
    }
  } else {
    // JetStream on every nats-server (durable delivery and relay-js store there; the others leave it idle).
    const jetstreamDir = await fleet.tempDir(`chatgate-bench-js-${target}-`);
    const nats = await startNatsServer({ port: -1, jetstreamDir });
    fleet.onCleanup(() => nats.stop());
    broker = { name: 'nats-server', pid: nats.pid };
    if (target === 'ephemeral' || target === 'durable') {
      auth = fleet.spawn(`${target}-auth`, './auth-proc.ts', [nats.url, options.home]);
      await auth.ready;
      const json = JSON.stringify(options.gatewayOptions ?? {});
      nodes = ids.map((n) => fleet.spawn(`${target}-${n}`, './gateway-proc.ts', [nats.url, `gw-${n}`, target, json]));
    } else {
      const mode = target === 'relay' ? 'core' : 'jetstream';
      nodes = [];
      // One after another in jetstream mode: the first makes the streams.
      for (const n of ids) {
        const node = fleet.spawn<{ url: string; nodeId: string }>(`${target}-${n}`, './relay.ts', [nats.url, `relay-${n}`, options.home, mode]);
        if (mode === 'jetstream') await node.ready;
        nodes.push(node);
      }
    }
  }
  const ready = await Promise.all(nodes.map((n) => n.ready));
  return { target, nodes, urls: ready.map((r) => r.url), auth, broker };
}
