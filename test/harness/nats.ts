/**
 * Real nats-server processes on free ports for tests: one, or a cluster whose members route to
 * the first. Every server a test starts is stopped by `stop()`, which tests call in afterAll.
 * Without nats-server installed this throws the install hint (see docker-free-nats.md).
 */
import { startNatsServer, type NatsServer, type NatsServerOptions } from '../../src/bus/nats-server.ts';

export type { NatsServer };

export interface NatsCluster {
  servers: NatsServer[];
  stop(): Promise<void>;
}

export async function startNats(): Promise<NatsServer> {
  return startNatsServer({ port: -1 });
}

async function routeCount(server: NatsServer): Promise<number> {
  const res = await fetch(`${server.monitorUrl}/routez`);
  const body = (await res.json()) as { num_routes?: number };
  return body.num_routes ?? 0;
}

/** Waits (bounded) until every member has a route to every other. */
async function waitForMesh(servers: NatsServer[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(servers.map(routeCount));
    if (counts.every((n) => n >= servers.length - 1)) return;
    if (Date.now() > deadline) throw new Error(`NATS cluster did not form: routes ${counts.join(',')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `extra` adds options to every member (a locked-down cluster: `authorization`, `routePassword`). */
export async function startNatsCluster(size = 3, extra: NatsServerOptions = {}): Promise<NatsCluster> {
  const servers: NatsServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    const seed = await startNatsServer({ ...extra, port: -1, clusterPort: -1, monitorPort: -1 });
    servers.push(seed);
    for (let i = 1; i < size; i++) {
      servers.push(
        await startNatsServer({ ...extra, port: -1, clusterPort: -1, monitorPort: -1, routes: [seed.routeUrl!] }),
      );
    }
    await waitForMesh(servers);
  } catch (err) {
    await stop();
    throw err;
  }
  return { servers, stop };
}
