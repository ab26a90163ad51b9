/**
 * A TCP proxy in front of a real nats-server, to cut one client's NATS connection while the
 * server and every other client carry on: `cut()` drops every proxied connection and refuses new
 * ones (the client sees a disconnect and keeps reconnecting), `heal()` lets them through again,
 * `retarget()` points it at another server (one restarted on a new port). Listens on a free port.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** `nats://127.0.0.1:port` for the client to connect to. */
  url: string;
  cut(): void;
  heal(): void;
  retarget(url: string): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  let { hostname, port } = new URL(target);
  let open = true;
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    // A dropped peer: the pair is destroyed below; nothing else to do.
    s.on('error', () => s.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    if (!open) return void client.destroy();
    const upstream = connect(Number(port), hostname);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const listening = typeof address === 'object' && address ? address.port : 0;
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    url: `nats://127.0.0.1:${listening}`,
    cut: () => {
      open = false;
      dropAll();
    },
    heal: () => {
      open = true;
    },
    retarget: (url) => {
      ({ hostname, port } = new URL(url));
    },
    close: async () => {
      open = false;
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
