/**
 * Real nats-server processes on free ports for tests, every one with JetStream (the revocations
 * bucket lives there) in a temporary store directory that `stop()` removes: one server, or a
 * cluster whose members route to the first. Every server a test starts is stopped by `stop()`,
 * which tests call in afterAll. Without nats-server installed this throws the install hint (see
 * docker-free-nats.md).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServer, type NatsServerOptions } from '../../src/bus/nats-server.ts';

export type { NatsServer };

export interface NatsCluster {
  servers: NatsServer[];
  stop(): Promise<void>;
}

/**
 * One nats-server; with JetStream in a new temporary directory unless `jetstream: false` (a
 * core-only server) or `jetstreamDir` is given (then the caller owns the directory).
 */
export async function startNats(
  options: Omit<NatsServerOptions, 'jetstreamDir'> & { jetstream?: boolean; jetstreamDir?: string } = {},
): Promise<NatsServer> {
  const { jetstream = true, jetstreamDir, ...rest } = options;
  const ownDir = jetstream && jetstreamDir === undefined ? await mkdtemp(join(tmpdir(), 'chatgate-js-')) : undefined;
  const dir = jetstream ? (jetstreamDir ?? ownDir) : undefined;
  try {
    const server = await startNatsServer({ port: -1, ...rest, jetstreamDir: dir });
    return {
      ...server,
      stop: async () => {
        await server.stop();
        if (ownDir) await rm(ownDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (ownDir) await rm(ownDir, { recursive: true, force: true });
    throw err;
  }
}

async function monitor<T>(server: NatsServer, path: string): Promise<T> {
  const res = await fetch(`${server.monitorUrl}${path}`);
  return (await res.json()) as T;
}

/**
 * Waits (bounded) until every member has a route to every other, and all agree on one
 * JetStream meta leader over the whole cluster: before that, no stream can be made.
 */
async function waitForCluster(servers: NatsServer[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const routes = await Promise.all(servers.map((s) => monitor<{ num_routes?: number }>(s, '/routez')));
    const metas = await Promise.all(
      servers.map((s) => monitor<{ meta_cluster?: { leader?: string; cluster_size?: number } }>(s, '/jsz')),
    );
    const leaders = new Set(metas.map((m) => m.meta_cluster?.leader));
    if (
      routes.every((r) => (r.num_routes ?? 0) >= servers.length - 1) &&
      leaders.size === 1 &&
      !leaders.has(undefined) &&
      !leaders.has('') &&
      metas.every((m) => (m.meta_cluster?.cluster_size ?? 0) >= servers.length)
    ) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `NATS cluster did not form: routes ${routes.map((r) => r.num_routes).join(',')}, meta ${JSON.stringify(metas.map((m) => m.meta_cluster))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * The seed's route names a host that never resolves (RFC 2606 `.invalid`): nats-server 2.9
 * starts a JetStream cluster member only with a configured route, the seed's own route port is
 * not known before it starts, and a route that never connects is what the usual "every member,
 * the seed included, routes to the seed" amounts to for the seed.
 */
const SEED_ROUTE = 'nats-route://chatgate-seed.invalid:4248';

/** `extra` adds options to every member (a locked-down cluster: `authorization`, `routePassword`). */
export async function startNatsCluster(size = 3, extra: NatsServerOptions = {}): Promise<NatsCluster> {
  const servers: NatsServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    const member = (i: number, routes: string[]) =>
      startNats({ ...extra, clusterPort: -1, monitorPort: -1, routes, serverName: `chatgate-test-${i}` });
    const seed = await member(0, [SEED_ROUTE]);
    servers.push(seed);
    for (let i = 1; i < size; i++) servers.push(await member(i, [seed.routeUrl!]));
    await waitForCluster(servers);
  } catch (err) {
    await stop();
    throw err;
  }
  return { servers, stop };
}
