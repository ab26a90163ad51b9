/**
 * A load generator process for the bench (bench/run.ts, bench/scale.ts): `ws` clients driven over
 * the control channel. The same code drives every target; only the wire format differs
 * (`Wire` below). Every received frame is parsed with one JSON.parse, for every target.
 *
 *   chatgate (`ephemeral`, `durable`)  `Authorization: Bearer <JWT>` + subprotocol `chatgate.v1`,
 *                                      ready at `welcome`; `{type:'send', id, to:{user}|{room}, body}`
 *   relay (`relay`, `relay-js`)        `Authorization: Bearer <JWT>`, ready at `{type:'ready'}`;
 *                                      `{id, to, body}`, `{id, room, body}`, `{type:'join', id, room}`
 *   Socket.IO (`socketio`)             Engine.IO 4 / Socket.IO 5 spoken over a bare `ws` socket (no
 *                                      socket.io-client: it would cost the shared cores more than
 *                                      the other targets' clients), `/socket.io/?EIO=4&transport=
 *                                      websocket`, the token in the CONNECT packet's auth, ready at
 *                                      the CONNECT answer; events with acknowledgements; pings answered
 *
 * Every sender stays within chatgate's default per-session send rate (`Pacer`, 95 % of
 * `sendsPerSecond`), for every target, so no limit is lifted anywhere. Client sockets bind to
 * 256 loopback addresses per load generator (127.<10+index>.x.y), so that chatgate's default
 * per-IP handshake and session limits see what they would see from many clients, not one.
 * Tokens are minted before any measurement, from the bench's CHATGATE_HOME.
 *
 * args: <home> <index>
 */
import { performance } from 'node:perf_hooks';
import { WebSocket, type RawData } from 'ws';
import { loadSigningKeys, type SigningKeys } from '../src/auth/keys.ts';
import { mintToken } from '../src/auth/tokens.ts';
import { defaultConnectionLimits } from '../machines/connection.machine.ts';
import { serveControl } from './control.ts';
import { encodeHistogram, newHistogram, Pacer, type Histogram } from './stats.ts';
import type { ConnectRequest, ConnectResult, Counts, OpenLoopRequest, OpenLoopResult, RoomsRequest, Target, UsersRequest } from './kinds.ts';

const HANDSHAKE_TIMEOUT_MS = 20_000;
/** Within chatgate's default per-session send rate, with headroom for the clocks of two processes. */
const PACE_RATE = defaultConnectionLimits.sendsPerSecond * 0.95;

const [home, indexArg = '0'] = process.argv.slice(2);
if (!home) {
  process.stderr.write('usage: loadgen.ts <home> [index]\n');
  process.exit(2);
}
const index = Number(indexArg);
const keys: SigningKeys = await loadSigningKeys(home);
const tokens = new Map<string, string>();
const localAddresses = Array.from({ length: 256 }, (_, k) => `127.${10 + index}.${k >> 4}.${(k & 15) + 1}`);
let nextAddress = 0;

// ---------------------------------------------------------------------------------------------
// Wire formats

type Family = 'chatgate' | 'relay' | 'socketio';
const familyOf = (t: Target): Family => (t === 'ephemeral' || t === 'durable' ? 'chatgate' : t === 'socketio' ? 'socketio' : 'relay');

/** What a received frame is, for the counters. */
type Inbound =
  | { kind: 'ack'; id: number }
  | { kind: 'message'; from: string; body: { t?: number } | undefined }
  | { kind: 'error'; what: string }
  | { kind: 'other' };

interface Wire {
  url(base: string): string;
  options(token: string): { protocols?: string[]; headers?: Record<string, string> };
  /** The first frames: `ready` once the session can receive, `fail` with why, or undefined to wait. */
  handshake(ws: WebSocket, text: string, token: string): 'ready' | { degraded: true } | string | undefined;
  send(id: number, to: string, body: unknown): string;
  sendRoom(id: number, room: string, body: unknown): string;
  join(id: number, room: string): string;
  parse(ws: WebSocket, text: string): Inbound;
}

const ackOrMessage = (frame: { type?: string; id?: number; from?: string; body?: { t?: number }; code?: string; message?: string }): Inbound => {
  switch (frame.type) {
    case 'ack':
      return { kind: 'ack', id: frame.id! };
    case 'message':
      return { kind: 'message', from: frame.from!, body: frame.body };
    case 'error':
      return { kind: 'error', what: `${frame.code}: ${frame.message}` };
    default:
      return { kind: 'other' };
  }
};

const wires: Record<Family, Wire> = {
  chatgate: {
    url: (base) => base,
    options: (token) => ({ protocols: ['chatgate.v1'], headers: { authorization: `Bearer ${token}` } }),
    handshake: (_ws, text) => {
      const frame = JSON.parse(text) as { type: string; degraded?: boolean; code?: string };
      if (frame.type === 'welcome') return frame.degraded ? { degraded: true } : 'ready';
      return `first frame was ${frame.type} ${frame.code ?? ''}`;
    },
    send: (id, to, body) => JSON.stringify({ type: 'send', id, to: { user: to }, body }),
    sendRoom: (id, room, body) => JSON.stringify({ type: 'send', id, to: { room }, body }),
    join: (id, room) => JSON.stringify({ type: 'join', id, room }),
    parse: (_ws, text) => ackOrMessage(JSON.parse(text)),
  },
  relay: {
    url: (base) => base,
    options: (token) => ({ headers: { authorization: `Bearer ${token}` } }),
    handshake: (_ws, text) => {
      const frame = JSON.parse(text) as { type: string };
      return frame.type === 'ready' ? 'ready' : `first frame was ${frame.type}`;
    },
    send: (id, to, body) => JSON.stringify({ id, to, body }),
    sendRoom: (id, room, body) => JSON.stringify({ id, room, body }),
    join: (id, room) => JSON.stringify({ type: 'join', id, room }),
    parse: (_ws, text) => ackOrMessage(JSON.parse(text)),
  },
  // Engine.IO packets: 0 open, 2 ping, 3 pong, 4 message; Socket.IO packets inside a message:
  // 0 CONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, each optionally followed by an ack id.
  socketio: {
    url: (base) => `${base}socket.io/?EIO=4&transport=websocket`,
    options: () => ({}),
    handshake: (ws, text, token) => {
      if (text.startsWith('0')) {
        ws.send(`40${JSON.stringify({ token })}`);
        return undefined;
      }
      if (text.startsWith('40')) return 'ready';
      if (text.startsWith('44')) return `connect_error ${text.slice(2)}`;
      return undefined;
    },
    send: (id, to, body) => `42${id}${JSON.stringify(['send', { to, body }])}`,
    sendRoom: (id, room, body) => `42${id}${JSON.stringify(['send', { room, body }])}`,
    join: (id, room) => `42${id}${JSON.stringify(['join', room])}`,
    parse: (ws, text) => {
      if (text === '2') {
        ws.send('3');
        return { kind: 'other' };
      }
      if (text.startsWith('43')) {
        const open = text.indexOf('[');
        JSON.parse(text.slice(open)); // the ack's arguments, parsed as every target's frame is
        return { kind: 'ack', id: Number(text.slice(2, open)) };
      }
      if (text.startsWith('42[')) {
        const [event, payload] = JSON.parse(text.slice(2)) as [string, { from: string; body?: { t?: number } }];
        return event === 'message' ? { kind: 'message', from: payload.from, body: payload.body } : { kind: 'other' };
      }
      return { kind: 'other' };
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Sessions

/** One client session with what it sends and receives in the message phases. */
interface Conn {
  target: Target;
  user: string;
  ws: WebSocket;
  wire: Wire;
  nextId: number;
  /** The link this session sends on, and the one it receives on (paired users). */
  out?: Link;
  in?: Link;
  /** Pending join acks, by id. */
  joins: Map<number, () => void>;
  /** A pump retry is scheduled (the pacer said wait). */
  retry?: NodeJS.Timeout;
}
/** One direction of a pair: `from` sends to `to`'s user. */
interface Link {
  from: Conn;
  to: Conn;
  sent: number;
  acked: number;
  received: number;
  pacer: Pacer;
}

function openSession(target: Target, base: string, user: string): Promise<{ conn: Conn; degraded: boolean }> {
  return new Promise((resolve, reject) => {
    const token = tokens.get(user);
    if (!token) return reject(new Error(`no token minted for ${user}`));
    const wire = wires[familyOf(target)];
    const { protocols, headers } = wire.options(token);
    const ws = new WebSocket(wire.url(base), protocols ?? [], {
      headers,
      perMessageDeflate: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      localAddress: localAddresses[nextAddress++ % localAddresses.length],
    });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('not ready in time'));
    }, HANDSHAKE_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      ws.removeAllListeners('message');
      reject(err);
    };
    ws.on('error', (err) => fail(err));
    ws.once('close', (code, reason) => fail(new Error(`closed ${code} ${reason.toString()} before ready`)));
    const onHandshake = (data: RawData) => {
      const verdict = wire.handshake(ws, data.toString(), token);
      if (verdict === undefined) return;
      clearTimeout(timer);
      ws.off('message', onHandshake);
      ws.removeAllListeners('close');
      if (typeof verdict === 'string' && verdict !== 'ready') {
        ws.terminate();
        reject(new Error(verdict));
        return;
      }
      const conn: Conn = { target, user, ws, wire, nextId: 0, joins: new Map() };
      wireUp(conn);
      resolve({ conn, degraded: typeof verdict === 'object' });
    };
    ws.on('message', onHandshake);
  });
}

// ---------------------------------------------------------------------------------------------
// Counters and modes

type Mode = 'off' | 'pump' | 'latency' | 'fanout';
let mode: Mode = 'off';
const counts: Counts = { sent: 0, acked: 0, received: 0, errors: 0, closes: 0, paced: 0 };
let window = 4;
let filler = '';
let histogram: Histogram = newHistogram();
let measureFrom = Infinity;
let measureTo = -Infinity;
let measuredReceived = 0;

function noteError(what: string): void {
  counts.errors += 1;
  counts.firstError ??= what;
}

function wireUp(conn: Conn): void {
  conn.ws.on('message', (data: RawData) => {
    const frame = conn.wire.parse(conn.ws, data.toString());
    if (frame.kind === 'ack') {
      const join = conn.joins.get(frame.id);
      if (join) {
        conn.joins.delete(frame.id);
        join();
        return;
      }
      counts.acked += 1;
      const link = conn.out;
      if (link && mode !== 'fanout') {
        link.acked += 1;
        if (mode === 'pump') pump(link);
      }
    } else if (frame.kind === 'message') {
      if (frame.from === conn.user) return; // relay-js: a room message's copy back to its sender
      counts.received += 1;
      if (mode === 'latency' || mode === 'fanout') {
        const t = frame.body?.t ?? 0;
        if (t >= measureFrom && t < measureTo) {
          measuredReceived += 1;
          histogram.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
        }
      }
      const link = conn.in;
      if (link && mode !== 'fanout') {
        link.received += 1;
        if (mode === 'pump') pump(link);
      }
    } else if (frame.kind === 'error') noteError(frame.what);
  });
  conn.ws.on('error', () => {}); // followed by close
  conn.ws.on('close', (code) => {
    if (mode !== 'off') {
      counts.closes += 1;
      counts.firstError ??= `socket closed ${code}`;
    }
  });
}

function resetCounts(): void {
  Object.assign(counts, { sent: 0, acked: 0, received: 0, errors: 0, closes: 0, paced: 0, firstError: undefined });
  for (const l of links) {
    l.sent = 0;
    l.acked = 0;
    l.received = 0;
  }
}

const bodyOf = (t: number) => ({ t, s: filler });

function sendOn(link: Link, t: number): void {
  const conn = link.from;
  conn.ws.send(conn.wire.send(conn.nextId++, link.to.user, bodyOf(t)));
  link.sent += 1;
  counts.sent += 1;
}

/** Closed loop: as many sends as the window allows (acks and deliveries alike), within the pacer. */
function pump(link: Link): void {
  while (mode === 'pump' && link.sent - link.acked < window && link.sent - link.received < window) {
    const now = performance.now();
    if (!link.pacer.take(now)) {
      counts.paced += 1;
      const conn = link.from;
      if (!conn.retry) {
        conn.retry = setTimeout(() => {
          conn.retry = undefined;
          pump(link);
        }, Math.ceil(link.pacer.waitMs(now)));
      }
      return;
    }
    sendOn(link, now);
  }
}

// ---------------------------------------------------------------------------------------------
// State per target

const idle = new Map<Target, Conn[]>();
/** Paired users per target, in the order opened; `links` are those of the target measured now. */
const paired = new Map<Target, { conns: Conn[]; links: Link[]; rooms: Array<{ room: string; members: Conn[] }> }>();
let links: Link[] = [];

async function connectMany(req: ConnectRequest): Promise<ConnectResult> {
  let next = 0;
  let failed = 0;
  let degraded = 0;
  let firstError: string | undefined;
  const list = idle.get(req.target) ?? [];
  idle.set(req.target, list);
  const started = performance.now();
  const worker = async () => {
    while (next < req.users.length) {
      const i = next++;
      try {
        const session = await openSession(req.target, req.urls[i % req.urls.length]!, req.users[i]!);
        if (session.degraded) degraded += 1;
        list.push(session.conn);
      } catch (err) {
        failed += 1;
        firstError ??= String((err as Error).message ?? err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(req.concurrency, req.users.length) }, worker));
  return { opened: req.users.length - failed, failed, degraded, elapsedMs: performance.now() - started, firstError };
}

/** Closes sockets with a close handshake, and cuts those still open after `deadlineMs`. */
async function closeAll(conns: Conn[], deadlineMs = 10_000): Promise<number> {
  const closed = conns.map(
    ({ ws, retry }) =>
      new Promise<void>((resolve) => {
        clearTimeout(retry);
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        ws.close(1000);
      }),
  );
  const timer = setTimeout(() => conns.forEach((c) => c.ws.terminate()), deadlineMs);
  await Promise.all(closed);
  clearTimeout(timer);
  return conns.length;
}

async function openUsers(req: UsersRequest): Promise<number> {
  const made = await Promise.all(
    req.pairs.map(async ({ a, b }) => {
      const [ca, cb] = await Promise.all([openSession(req.target, req.urls[0], a), openSession(req.target, req.urls[1], b)]);
      return [ca.conn, cb.conn] as const;
    }),
  );
  const conns: Conn[] = [];
  const made_links: Link[] = [];
  const now = performance.now();
  const link = (from: Conn, to: Conn): Link => {
    const l: Link = { from, to, sent: 0, acked: 0, received: 0, pacer: new Pacer(PACE_RATE, window, now) };
    from.out = l;
    to.in = l;
    return l;
  };
  // Links interleaved A→B, B→A, so that the first n links of the latency phase go both ways.
  for (const [a, b] of made) {
    conns.push(a, b);
    made_links.push(link(a, b), link(b, a));
  }
  paired.set(req.target, { conns, links: made_links, rooms: [] });
  return conns.length;
}

function request(conn: Conn, frame: (id: number) => string, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const id = conn.nextId++;
    const timer = setTimeout(() => {
      conn.joins.delete(id);
      reject(new Error(`${conn.user}: no ack in ${timeoutMs} ms`));
    }, timeoutMs);
    conn.joins.set(id, () => {
      clearTimeout(timer);
      resolve();
    });
    conn.ws.send(frame(id));
  });
}

async function joinRooms(req: RoomsRequest): Promise<number> {
  const set = paired.get(req.target)!;
  const rooms = req.rooms.map(({ room, members }) => ({ room, members: members.map((i) => set.conns[i]!) }));
  let joins = 0;
  for (const { room, members } of rooms) {
    // A few at a time per room: each join takes a send token too.
    for (let k = 0; k < members.length; k += 50) {
      await Promise.all(members.slice(k, k + 50).map((c) => request(c, (id) => c.wire.join(id, room))));
      joins += Math.min(50, members.length - k);
    }
  }
  set.rooms = rooms;
  return joins;
}

/** Waits until every message sent has arrived and been acknowledged, or the deadline. */
async function drain(deadlineMs: number, expected: () => boolean): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (performance.now() < deadline && !expected()) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Open loop: message k is due at start + k / rate; its latency counts from that time, so a stalled
 * sender shows in the figures instead of hiding (no coordinated omission). `next(k, due)` sends it
 * and says how many deliveries it should make.
 */
async function openLoop(req: OpenLoopRequest, next: (k: number, due: number) => number): Promise<Omit<OpenLoopResult, keyof Counts>> {
  filler = 'x'.repeat(req.bodyBytes);
  histogram = newHistogram();
  measuredReceived = 0;
  const start = performance.now();
  measureFrom = start + req.warmupMs;
  measureTo = measureFrom + req.durationMs;
  const intervalMs = 1000 / req.rate;
  let scheduled = 0;
  let measuredSent = 0;
  let measuredExpected = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (start + scheduled * intervalMs <= now && start + scheduled * intervalMs < measureTo) {
        const due = start + scheduled * intervalMs;
        const deliveries = next(scheduled, due);
        if (due >= measureFrom) {
          measuredSent += 1;
          measuredExpected += deliveries;
        }
        scheduled += 1;
      }
      if (start + scheduled * intervalMs >= measureTo) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await drain(5000, () => measuredReceived >= measuredExpected && counts.acked >= counts.sent);
  return { histogram: encodeHistogram(histogram), measuredSent, measuredReceived, measuredExpected };
}

async function runLatency(req: OpenLoopRequest): Promise<OpenLoopResult> {
  const set = paired.get(req.target)!;
  links = set.links.slice(0, req.links ?? set.links.length);
  resetCounts();
  mode = 'latency';
  const result = await openLoop(req, (k, due) => {
    sendOn(links[k % links.length]!, due);
    return 1;
  });
  mode = 'off';
  return { ...counts, ...result };
}

async function runFanout(req: OpenLoopRequest): Promise<OpenLoopResult> {
  const set = paired.get(req.target)!;
  links = [];
  resetCounts();
  mode = 'fanout';
  const rooms = set.rooms;
  const result = await openLoop(req, (k, due) => {
    // Room k mod R, sent by its members in turn: each member sends rarely, well within the rate.
    const { room, members } = rooms[k % rooms.length]!;
    const conn = members[Math.floor(k / rooms.length) % members.length]!;
    conn.ws.send(conn.wire.sendRoom(conn.nextId++, room, bodyOf(due)));
    counts.sent += 1;
    return members.length - 1;
  });
  mode = 'off';
  return { ...counts, ...result };
}

serveControl(
  {
    mint: async ({ users, rooms }: { users: string[]; rooms?: '*' }) => {
      for (const user of users) {
        if (!tokens.has(user)) tokens.set(user, await mintToken(keys, { sub: user, ttl: 6 * 3600, ...(rooms ? { rooms } : {}) }));
      }
      return tokens.size;
    },
    connect: (req: ConnectRequest) => connectMany(req),
    closeIdle: async (target: Target) => {
      const n = await closeAll(idle.get(target) ?? []);
      idle.set(target, []);
      return n;
    },
    openUsers: (req: UsersRequest) => openUsers(req),
    joinRooms: (req: RoomsRequest) => joinRooms(req),
    pumpStart: ({ target, window: w, bodyBytes }: { target: Target; window: number; bodyBytes: number }) => {
      links = paired.get(target)!.links;
      resetCounts();
      window = w;
      filler = 'x'.repeat(bodyBytes);
      const now = performance.now();
      for (const l of links) l.pacer = new Pacer(PACE_RATE, w, now);
      mode = 'pump';
      links.forEach(pump);
      return true;
    },
    mark: () => {
      const { user, system } = process.cpuUsage();
      return { ...counts, cpuMs: (user + system) / 1000 };
    },
    pumpStop: async () => {
      mode = 'off';
      await drain(5000, () => links.every((l) => l.received >= l.sent && l.acked >= l.sent));
      return { ...counts };
    },
    latency: (req: OpenLoopRequest) => runLatency(req),
    fanout: (req: OpenLoopRequest) => runFanout(req),
    closeUsers: async (target: Target) => {
      mode = 'off';
      const n = await closeAll(paired.get(target)?.conns ?? []);
      paired.delete(target);
      links = [];
      return n;
    },
    shutdown: () => {
      for (const c of [...[...idle.values()].flat(), ...[...paired.values()].flatMap((p) => p.conns)]) c.ws.terminate();
      setImmediate(() => process.exit(0));
      return true;
    },
  },
  { pid: process.pid },
);
