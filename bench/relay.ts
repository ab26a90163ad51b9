/**
 * The baseline: a bare `ws` relay over NATS, the practical limit of chatgate's architecture
 * (WebSocket nodes that pass messages to each other through NATS) without anything chatgate adds.
 *
 *   - A client connects to `/?user=ID`: no token, no authentication, no connection state machine.
 *   - The node holds one NATS subscription per connected user, `relay.<ID>`, shared by that
 *     user's sockets on the node (the same sharing chatgate does), and writes every message it
 *     receives on it to those sockets as it is.
 *   - A client frame is JSON `{ "id"?, "to", "body" }`: parsed once, and published on `relay.<to>`
 *     as `{ type: 'message', from, to, body }` (one JSON encoding per message, like chatgate).
 *
 * Kept honest, not naive, where chatgate's guarantees would otherwise make the comparison unfair:
 *   - `ready`: the node tells the client `{"type":"ready"}` once the NATS server has its
 *     subscription (a flush round trip), as chatgate's `welcome` does; without it a message sent
 *     right after connecting could be lost, and the load generator could not know when to start.
 *   - `ack`: a frame with an `id` is answered `{"type":"ack","id"}` once the NATS server has the
 *     message (a flush round trip), as chatgate acknowledges a `send`. Flushes are shared by every
 *     caller in the same tick, as in chatgate's `Interest.flush`.
 * Left out, because that is what chatgate is for: authentication (JWT, auth service, breaker),
 * frame validation beyond "is it JSON with a string `to`", rooms, rate limits, backpressure
 * (no `bufferedAmount` check), heartbeats, metrics, logging, graceful shutdown.
 *
 * Run as a child process of `bench/run.ts` (args: <natsUrl> <nodeId>), or import `startRelay`.
 */
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, WebSocket } from 'ws';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { processHandlers, serveControl } from './control.ts';

/** Subject tokens the relay accepts as user ids: no wildcards, no dots. */
const USER_ID = /^[A-Za-z0-9_-]{1,128}$/;
const READY = '{"type":"ready"}';

export interface Relay {
  url: string;
  nc: NatsConnection;
  /** Connected sockets. */
  size(): number;
  /** NATS subscriptions held (one per connected user). */
  subscriptions(): number;
  close(): Promise<void>;
}

export async function startRelay(natsUrl: string, nodeId: string): Promise<Relay> {
  const nc = await connect({ servers: natsUrl, name: `relay-${nodeId}` });
  const users = new Map<string, { sub: Subscription; sockets: Set<WebSocket> }>();
  let sockets = 0;

  let nextFlush: Promise<void> | undefined;
  const flush = () =>
    (nextFlush ??= Promise.resolve().then(() => {
      nextFlush = undefined;
      return nc.flush();
    }));

  const wss = new WebSocketServer({ noServer: true, maxPayload: 65536, clientTracking: false, perMessageDeflate: false });
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? '';
    if (!USER_ID.test(user)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets += 1;
      let entry = users.get(user);
      if (!entry) {
        const local = new Set<WebSocket>();
        const sub = nc.subscribe(`relay.${user}`, {
          callback: (err, msg) => {
            if (err) return; // a permissions error ends the subscription; nothing to deliver
            for (const s of local) s.send(msg.data, { binary: false });
          },
        });
        entry = { sub, sockets: local };
        users.set(user, entry);
      }
      const mine = entry;
      mine.sockets.add(ws);
      flush().then(
        () => ws.readyState === WebSocket.OPEN && ws.send(READY),
        () => ws.close(1011, 'nats unavailable'),
      );
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        let frame: { id?: unknown; to?: unknown; body?: unknown };
        try {
          frame = JSON.parse(data.toString());
        } catch {
          return; // not JSON: a bare relay drops it
        }
        const to = frame?.to;
        if (typeof to !== 'string' || !USER_ID.test(to)) return;
        nc.publish(`relay.${to}`, JSON.stringify({ type: 'message', from: user, to, body: frame.body }));
        const id = frame.id;
        if (id !== undefined) {
          flush().then(
            () => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ type: 'ack', id })),
            () => ws.close(1011, 'nats unavailable'),
          );
        }
      });
      ws.on('error', () => {}); // the close that follows does the cleanup
      ws.on('close', () => {
        sockets -= 1;
        mine.sockets.delete(ws);
        if (mine.sockets.size === 0 && users.get(user) === mine) {
          users.delete(user);
          mine.sub.unsubscribe();
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `ws://127.0.0.1:${port}/`,
    nc,
    size: () => sockets,
    subscriptions: () => users.size,
    close: async () => {
      server.close();
      server.closeAllConnections();
      await nc.drain().catch(() => nc.close());
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [natsUrl, nodeId] = process.argv.slice(2);
  if (!natsUrl || !nodeId) {
    process.stderr.write('usage: relay.ts <natsUrl> <nodeId>\n');
    process.exit(2);
  }
  const relay = await startRelay(natsUrl, nodeId);
  serveControl(
    {
      ...processHandlers(),
      count: () => relay.size(),
      subscriptions: () => relay.subscriptions(),
      shutdown: async () => {
        await relay.close();
        setImmediate(() => process.exit(0));
        return true;
      },
    },
    { url: relay.url, nodeId },
  );
}
