/**
 * The Socket.IO target: one Socket.IO 4 node with the Redis adapter (`@socket.io/redis-adapter`'s
 * `createAdapter`, the classic one: every node receives every broadcast through one pattern
 * subscription and keeps the sockets of its rooms itself), as a child process of the bench.
 * What a Node team would write instead of chatgate, kept minimal and fair:
 *
 *   - WebSocket transport only (no long-polling, no HTTP compression, no per-message deflate),
 *     the default parser.
 *   - Authentication: a namespace middleware verifies the JWT of the `auth` payload
 *     (`{token}`, sent in the CONNECT packet) on every connection, with jose against the bench's
 *     public JWK Set: ES256, `iss` and `aud` `chatgate`, `sub`, `exp`, `iat` required, the same
 *     checks as the ws relay and chatgate's auth service minus revocations. Refused: `connect_error`.
 *   - Users: each socket joins the room `u:<sub>`; `send` `{to, body}` → `io.to('u:' + to)` emits
 *     `message` `{from, to, body}`.
 *   - Rooms: `join` `room` → `socket.join('r:' + room)`; `send` `{room, body}` →
 *     `socket.to('r:' + room)` emits `message` `{from, room, body}` (every other socket in the room).
 *   - Acknowledgements: Socket.IO's own, called once the emit has been handed to the adapter (the
 *     Redis PUBLISH is queued, not confirmed: Socket.IO gives a broadcast no delivery promise).
 * Left out: room grants, rate limits, connection state recovery, message ids, history.
 *
 * args: <redisUrl> <nodeId> <home>
 */
import { createServer } from 'node:http';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createClient } from 'redis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { loadSigningKeys } from '../src/auth/keys.ts';
import { processHandlers, serveControl } from './control.ts';

const [redisUrl, nodeId, home] = process.argv.slice(2);
if (!redisUrl || !nodeId || !home) {
  process.stderr.write('usage: socketio-node.ts <redisUrl> <nodeId> <home>\n');
  process.exit(2);
}

const jwks = createLocalJWKSet((await loadSigningKeys(home)).jwks);
const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
for (const client of [pub, sub]) client.on('error', (err: Error) => process.stderr.write(`socketio ${nodeId}: redis ${err.message}\n`));
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer((_req, res) => res.writeHead(404).end());
const io = new Server(http, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 65536,
});
const adapterReady = pub.pubSubNumPat();
io.adapter(createAdapter(pub, sub));
// The adapter subscribes in the background: wait until redis counts one more pattern subscription.
{
  const before = await adapterReady;
  const deadline = Date.now() + 10_000;
  while ((await pub.pubSubNumPat()) <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

interface Data {
  user: string;
}

io.use((socket, next) => {
  const token = (socket.handshake.auth as { token?: unknown }).token;
  if (typeof token !== 'string') return next(new Error('unauthorized'));
  jwtVerify(token, jwks, { algorithms: ['ES256'], issuer: 'chatgate', audience: 'chatgate', requiredClaims: ['sub', 'exp', 'iat'] }).then(
    ({ payload }) => {
      (socket.data as Data).user = payload.sub!;
      next();
    },
    () => next(new Error('unauthorized')),
  );
});

let sockets = 0;
io.on('connection', (socket) => {
  sockets += 1;
  const user = (socket.data as Data).user;
  void socket.join(`u:${user}`);
  socket.on('join', (room: unknown, ack?: () => void) => {
    if (typeof room !== 'string') return;
    void socket.join(`r:${room}`);
    if (typeof ack === 'function') ack();
  });
  socket.on('send', (frame: { to?: unknown; room?: unknown; body?: unknown }, ack?: () => void) => {
    if (typeof frame?.to === 'string') io.to(`u:${frame.to}`).emit('message', { from: user, to: frame.to, body: frame.body });
    else if (typeof frame?.room === 'string' && socket.rooms.has(`r:${frame.room}`)) {
      socket.to(`r:${frame.room}`).emit('message', { from: user, room: frame.room, body: frame.body });
    } else return;
    if (typeof ack === 'function') ack();
  });
  socket.on('disconnect', () => {
    sockets -= 1;
  });
});

await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
const address = http.address();
const port = typeof address === 'object' && address ? address.port : 0;

serveControl(
  {
    ...processHandlers(),
    count: () => sockets,
    /** Redis subscriptions of this node: the adapter's pattern and request channels, not per room. */
    subscriptions: () => 0,
    shutdown: async () => {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
      await Promise.allSettled([pub.quit(), sub.quit()]);
      setImmediate(() => process.exit(0));
      return true;
    },
  },
  { url: `ws://127.0.0.1:${port}/`, nodeId },
);
