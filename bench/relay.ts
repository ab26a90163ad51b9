/**
 * The baselines: a bare `ws` relay over NATS, the practical limit of chatgate's architecture
 * (WebSocket nodes that pass messages to each other through NATS) without anything chatgate adds.
 * Two modes, the same code:
 *
 *   core       (target `relay`)    publishes on core NATS and acknowledges once the NATS server has
 *                                  the message (a flush round trip, shared by every ack of a tick,
 *                                  as chatgate's `Interest.flush`)
 *   jetstream  (target `relay-js`) publishes into a JetStream stream (R1, file storage, chatgate's
 *                                  limits) and acknowledges on the PubAck; the stream republishes
 *                                  each stored message to the live subject the nodes subscribe to,
 *                                  as chatgate's durable delivery does. Publishes of one socket
 *                                  are pipelined (nothing waits for the previous PubAck).
 *
 * The protocol (JSON text frames):
 *   - Upgrade with `Authorization: Bearer <JWT>`: the token is verified before the upgrade, every
 *     time, with jose against the bench's public JWK Set (ES256; `iss` and `aud` `chatgate`; `sub`,
 *     `exp`, `iat` required), the same checks chatgate's auth service makes minus revocations;
 *     401 if it fails. The user is the token's `sub`.
 *   - `{"type":"ready"}` once the NATS server has the user's subscription (a flush), as chatgate's
 *     `welcome`; without it a message sent right after connecting could be lost.
 *   - `{id?, to, body}`: to a user, published on `relay.u.<to>` as `{type:'message', from, to, body}`.
 *   - `{type:'join', id, room}`: the node subscribes `relay.r.<room>` (once per node, shared by its
 *     sockets in the room), then `{type:'ack', id}` after a flush.
 *   - `{id?, room, body}`: to a room, published on `relay.r.<room>` as `{type:'message', from,
 *     room, body}`; every other socket in the room gets it (core mode: the publish carries the
 *     sender's socket id as its reply subject, so the sender's node skips it; jetstream mode: the
 *     republished copy loses the reply subject, so the sender gets its own copy too, one extra
 *     write per room message, which the load generator does not count).
 *   - a frame with an `id` is answered `{type:'ack', id}` (see the modes above).
 * One NATS subscription per user and per room per node, shared by that node's sockets (the sharing
 * chatgate does). Left out, because that is what chatgate is for: revocations, room grants, frame
 * validation beyond "JSON with a string `to` or `room`", rate limits, backpressure (no
 * `bufferedAmount` check), heartbeats, metrics, logging, graceful shutdown, message ids, history.
 *
 * Run as a child process of the bench (args: <natsUrl> <nodeId> <home> [core|jetstream]).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, WebSocket } from 'ws';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { nanos, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { loadSigningKeys } from '../src/auth/keys.ts';
import { defaults } from '../src/defaults.ts';
import { processHandlers, serveControl } from './control.ts';

/** Subject tokens the relay accepts as user and room ids: no wildcards, no dots. */
const ID = /^[A-Za-z0-9_-]{1,128}$/;
const READY = '{"type":"ready"}';

export type RelayMode = 'core' | 'jetstream';

export interface Relay {
  url: string;
  nc: NatsConnection;
  /** Connected sockets. */
  size(): number;
  /** NATS subscriptions held (one per connected user and per joined room). */
  subscriptions(): number;
  close(): Promise<void>;
}

/** The two streams of jetstream mode, with chatgate's limits (src/durable/streams.ts). */
function relayStreams() {
  const base = {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_msgs_per_subject: defaults.historyMaxPerTarget,
    max_age: nanos(defaults.historyMaxAgeS * 1000),
    num_replicas: 1,
  };
  return [
    { ...base, name: 'RELAY_USERS', subjects: ['relaystore.u.*'], republish: { src: 'relaystore.u.*', dest: 'relay.u.{{wildcard(1)}}' } },
    { ...base, name: 'RELAY_ROOMS', subjects: ['relaystore.r.*'], republish: { src: 'relaystore.r.*', dest: 'relay.r.{{wildcard(1)}}' } },
  ];
}

function refuse(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
function destroySocket(this: Duplex): void {
  this.destroy();
}

export async function startRelay(natsUrl: string, nodeId: string, home: string, mode: RelayMode = 'core'): Promise<Relay> {
  const jwks = createLocalJWKSet((await loadSigningKeys(home)).jwks);
  const nc = await connect({ servers: natsUrl, name: `relay-${nodeId}` });
  const js = mode === 'jetstream' ? jetstream(nc) : undefined;
  if (js) {
    const jsm = await jetstreamManager(nc);
    for (const config of relayStreams()) await jsm.streams.add(config); // the same config again is a no-op
  }
  /** Per user (`relay.u.<id>`) and per room (`relay.r.<id>`): the subscription and local sockets with their ids. */
  const subjects = new Map<string, { sub: Subscription; sockets: Map<WebSocket, string> }>();
  let sockets = 0;
  let nextSocketId = 0;

  let nextFlush: Promise<void> | undefined;
  const flush = () =>
    (nextFlush ??= Promise.resolve().then(() => {
      nextFlush = undefined;
      return nc.flush();
    }));

  const attach = (subject: string, ws: WebSocket, socketId: string) => {
    let entry = subjects.get(subject);
    if (!entry) {
      const local = new Map<WebSocket, string>();
      const sub = nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err) return; // a permissions error ends the subscription; nothing to deliver
          const from = msg.reply;
          for (const [s, id] of local) if (id !== from) s.send(msg.data, { binary: false });
        },
      });
      entry = { sub, sockets: local };
      subjects.set(subject, entry);
    }
    entry.sockets.set(ws, socketId);
    return entry;
  };
  const detach = (subject: string, ws: WebSocket) => {
    const entry = subjects.get(subject);
    if (!entry) return;
    entry.sockets.delete(ws);
    if (entry.sockets.size === 0) {
      subjects.delete(subject);
      entry.sub.unsubscribe();
    }
  };

  const wss = new WebSocketServer({ noServer: true, maxPayload: 65536, clientTracking: false, perMessageDeflate: false });
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', destroySocket);
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : '';
    if (!token) return refuse(socket, '401 Unauthorized');
    jwtVerify(token, jwks, { algorithms: ['ES256'], issuer: 'chatgate', audience: 'chatgate', requiredClaims: ['sub', 'exp', 'iat'] }).then(
      ({ payload }) => {
        const user = payload.sub!;
        if (!ID.test(user)) return refuse(socket, '403 Forbidden');
        wss.handleUpgrade(req, socket, head, (ws) => serve(ws, user));
      },
      () => refuse(socket, '401 Unauthorized'),
    );
  });

  function serve(ws: WebSocket, user: string): void {
    sockets += 1;
    const socketId = `_s.${nodeId}.${nextSocketId++}`;
    const inbox = `relay.u.${user}`;
    const joined = new Set<string>([inbox]);
    attach(inbox, ws, socketId);
    const fail = () => ws.close(1011, 'nats unavailable');
    flush().then(() => ws.readyState === WebSocket.OPEN && ws.send(READY), fail);
    const ack = (id: unknown) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ type: 'ack', id }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let frame: { type?: unknown; id?: unknown; to?: unknown; room?: unknown; body?: unknown };
      try {
        frame = JSON.parse(data.toString());
      } catch {
        return; // not JSON: a bare relay drops it
      }
      const { id, to, room } = frame;
      if (frame.type === 'join') {
        if (typeof room !== 'string' || !ID.test(room)) return;
        const subject = `relay.r.${room}`;
        if (!joined.has(subject)) {
          joined.add(subject);
          attach(subject, ws, socketId);
        }
        flush().then(() => ack(id), fail);
        return;
      }
      let payload: string;
      let kind: 'u' | 'r';
      let target: string;
      if (typeof to === 'string' && ID.test(to)) {
        payload = JSON.stringify({ type: 'message', from: user, to, body: frame.body });
        kind = 'u';
        target = to;
      } else if (typeof room === 'string' && joined.has(`relay.r.${room}`)) {
        payload = JSON.stringify({ type: 'message', from: user, room, body: frame.body });
        kind = 'r';
        target = room;
      } else return;
      if (js) {
        const stored = js.publish(`relaystore.${kind}.${target}`, payload);
        if (id !== undefined) stored.then(() => ack(id), fail);
        else stored.catch(fail);
        return;
      }
      nc.publish(`relay.${kind}.${target}`, payload, kind === 'r' ? { reply: socketId } : undefined);
      if (id !== undefined) flush().then(() => ack(id), fail);
    });
    ws.on('error', () => {}); // the close that follows does the cleanup
    ws.on('close', () => {
      sockets -= 1;
      for (const subject of joined) detach(subject, ws);
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `ws://127.0.0.1:${port}/`,
    nc,
    size: () => sockets,
    subscriptions: () => subjects.size,
    close: async () => {
      server.close();
      server.closeAllConnections();
      await nc.drain().catch(() => nc.close());
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [natsUrl, nodeId, home, mode = 'core'] = process.argv.slice(2);
  if (!natsUrl || !nodeId || !home || (mode !== 'core' && mode !== 'jetstream')) {
    process.stderr.write('usage: relay.ts <natsUrl> <nodeId> <home> [core|jetstream]\n');
    process.exit(2);
  }
  const relay = await startRelay(natsUrl, nodeId, home, mode);
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
