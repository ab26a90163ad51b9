/**
 * A load generator process for `bench/run.ts`: `ws` clients driven over the control channel.
 * The same code drives chatgate and the relay; only the handshake and the frame shape differ:
 *
 *   chatgate  `Authorization: Bearer <JWT>` + subprotocol `chatgate.v1`, ready at `welcome`;
 *             sends `{type:'send', id, to:{user}, body}`, acknowledged by `{type:'ack', id, msgId}`
 *   relay     `?user=ID`, ready at `{type:'ready'}`;
 *             sends `{id, to, body}`, acknowledged by `{type:'ack', id}`
 *
 * Every received frame is parsed with JSON.parse, for both. Tokens are minted before any
 * measurement, from the bench's CHATGATE_HOME (args: <home>).
 */
import { performance } from 'node:perf_hooks';
import { WebSocket, type RawData } from 'ws';
import * as hdr from 'hdr-histogram-js';
import { loadSigningKeys, type SigningKeys } from '../src/auth/keys.ts';
import { mintToken } from '../src/auth/tokens.ts';
import { serveControl } from './control.ts';

/** `chatgate`: DELIVERY=durable (the default); `ephemeral`: chatgate with DELIVERY=ephemeral; `relay`: the baseline. */
export type SystemKind = 'chatgate' | 'ephemeral' | 'relay';

export interface ConnectRequest {
  kind: SystemKind;
  /** Connection i goes to urls[i % urls.length]. */
  urls: string[];
  users: string[];
  /** Handshakes in flight at once. */
  concurrency: number;
}
export interface ConnectResult {
  opened: number;
  failed: number;
  degraded: number;
  elapsedMs: number;
  firstError?: string;
}
export interface PairsRequest {
  kind: SystemKind;
  /** Senders connect to senderUrl, receivers to receiverUrl. */
  senderUrl: string;
  receiverUrl: string;
  pairs: Array<{ sender: string; receiver: string }>;
}
export interface PumpCounts {
  sent: number;
  acked: number;
  received: number;
  errors: number;
  closes: number;
  firstError?: string;
}
export interface LatencyRequest {
  kind: SystemKind;
  /** Messages per second from this process, spread round-robin over its pairs. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  bodyBytes: number;
}
export interface LatencyResult extends PumpCounts {
  /** Microseconds, hdr-histogram-js compressed base64. */
  histogram: string;
  /** Sent in the measured window, and how many of those arrived. */
  measuredSent: number;
  measuredReceived: number;
}

const HANDSHAKE_TIMEOUT_MS = 15_000;

const [home] = process.argv.slice(2);
if (!home) {
  process.stderr.write('usage: loadgen.ts <home>\n');
  process.exit(2);
}
const keys: SigningKeys = await loadSigningKeys(home);
const tokens = new Map<string, string>();

/** Opens one authenticated session and resolves once it can receive (welcome / ready). */
function openSession(kind: SystemKind, url: string, user: string): Promise<{ ws: WebSocket; degraded: boolean }> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    if (kind !== 'relay') {
      const token = tokens.get(user);
      if (!token) return reject(new Error(`no token minted for ${user}`));
      ws = new WebSocket(url, ['chatgate.v1'], {
        headers: { authorization: `Bearer ${token}` },
        perMessageDeflate: false,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
    } else {
      ws = new WebSocket(`${url}?user=${encodeURIComponent(user)}`, {
        perMessageDeflate: false,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
    }
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no welcome in time'));
    }, HANDSHAKE_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      ws.removeAllListeners('message');
      reject(err);
    };
    ws.on('error', (err) => fail(err));
    ws.once('close', (code, reason) => fail(new Error(`closed ${code} ${reason.toString()} before welcome`)));
    ws.once('message', (data: RawData) => {
      clearTimeout(timer);
      ws.removeAllListeners('close');
      const frame = JSON.parse(data.toString()) as { type: string; degraded?: boolean; code?: string };
      if (frame.type === 'welcome' || frame.type === 'ready') resolve({ ws, degraded: frame.degraded === true });
      else {
        ws.terminate();
        reject(new Error(`first frame was ${frame.type} ${frame.code ?? ''}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Idle sessions (connect rate and memory per connection)

/** Idle sessions, per system: both systems' can be open at once. */
const idle = new Map<SystemKind, WebSocket[]>([
  ['chatgate', []],
  ['ephemeral', []],
  ['relay', []],
]);

async function connectMany(req: ConnectRequest): Promise<ConnectResult> {
  let next = 0;
  let failed = 0;
  let degraded = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const worker = async () => {
    while (next < req.users.length) {
      const i = next++;
      try {
        const session = await openSession(req.kind, req.urls[i % req.urls.length]!, req.users[i]!);
        if (session.degraded) degraded += 1;
        session.ws.on('error', () => {}); // an idle socket's error is followed by its close
        idle.get(req.kind)!.push(session.ws);
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
async function closeAll(sockets: WebSocket[], deadlineMs = 10_000): Promise<number> {
  const closed = sockets.map(
    (ws) =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        ws.close(1000);
      }),
  );
  const timer = setTimeout(() => sockets.forEach((ws) => ws.terminate()), deadlineMs);
  await Promise.all(closed);
  clearTimeout(timer);
  return sockets.length;
}

// ---------------------------------------------------------------------------------------------
// Sender → receiver pairs (throughput and latency)

interface Pair {
  kind: SystemKind;
  to: string;
  sender: WebSocket;
  receiver: WebSocket;
  sent: number;
  acked: number;
  received: number;
}

/** Open pairs per system; `pairs` are the ones of the system being measured. */
const pairSets = new Map<SystemKind, Pair[]>([
  ['chatgate', []],
  ['ephemeral', []],
  ['relay', []],
]);
let pairs: Pair[] = [];
const counts: PumpCounts = { sent: 0, acked: 0, received: 0, errors: 0, closes: 0 };
let mode: 'off' | 'pump' | 'latency' = 'off';
let window = 16;
let filler = '';
let histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
let measureFrom = Infinity;
let measureTo = -Infinity;
let measuredReceived = 0;

function resetCounts(): void {
  Object.assign(counts, { sent: 0, acked: 0, received: 0, errors: 0, closes: 0, firstError: undefined });
  for (const p of pairs) {
    p.sent = 0;
    p.acked = 0;
    p.received = 0;
  }
}

function frameFor(pair: Pair, t: number): string {
  const id = pair.sent;
  const body = { t, s: filler };
  return pair.kind !== 'relay'
    ? JSON.stringify({ type: 'send', id, to: { user: pair.to }, body })
    : JSON.stringify({ id, to: pair.to, body });
}

function send(pair: Pair, t: number): void {
  pair.sender.send(frameFor(pair, t));
  pair.sent += 1;
  counts.sent += 1;
}

/** Closed loop: as many sends as the window allows, bounded by acks and by deliveries alike. */
function pump(pair: Pair): void {
  while (mode === 'pump' && pair.sent - pair.acked < window && pair.sent - pair.received < window) {
    send(pair, performance.now());
  }
}

function wire(pair: Pair): void {
  const noteError = (what: string) => {
    counts.errors += 1;
    counts.firstError ??= what;
  };
  pair.sender.on('message', (data: RawData) => {
    const frame = JSON.parse(data.toString()) as { type: string; code?: string; message?: string };
    if (frame.type === 'ack') {
      pair.acked += 1;
      counts.acked += 1;
      pump(pair);
    } else if (frame.type === 'error') noteError(`${frame.code}: ${frame.message}`);
  });
  pair.receiver.on('message', (data: RawData) => {
    const frame = JSON.parse(data.toString()) as { type: string; body?: { t?: number } };
    if (frame.type !== 'message') return;
    pair.received += 1;
    counts.received += 1;
    if (mode === 'latency') {
      const t = frame.body?.t ?? 0;
      if (t >= measureFrom && t < measureTo) {
        measuredReceived += 1;
        histogram.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
      }
    } else pump(pair);
  });
  for (const ws of [pair.sender, pair.receiver]) {
    ws.on('error', () => {});
    ws.on('close', (code) => {
      if (mode !== 'off') {
        counts.closes += 1;
        counts.firstError ??= `socket closed ${code}`;
      }
    });
  }
}

async function openPairs(req: PairsRequest): Promise<number> {
  const opened = await Promise.all(
    req.pairs.map(async ({ sender, receiver }) => {
      const [s, r] = await Promise.all([
        openSession(req.kind, req.senderUrl, sender),
        openSession(req.kind, req.receiverUrl, receiver),
      ]);
      return { kind: req.kind, to: receiver, sender: s.ws, receiver: r.ws, sent: 0, acked: 0, received: 0 };
    }),
  );
  opened.forEach(wire);
  pairSets.set(req.kind, opened);
  return opened.length;
}

/** Waits until every sent message has been received and acknowledged, or the deadline. */
async function drain(deadlineMs: number): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (performance.now() < deadline && pairs.some((p) => p.received < p.sent || p.acked < p.sent)) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function runLatency(req: LatencyRequest): Promise<LatencyResult> {
  pairs = pairSets.get(req.kind)!;
  resetCounts();
  filler = 'x'.repeat(req.bodyBytes);
  histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  measuredReceived = 0;
  mode = 'latency';
  const start = performance.now();
  measureFrom = start + req.warmupMs;
  measureTo = measureFrom + req.durationMs;
  const intervalMs = 1000 / req.rate;
  let scheduled = 0;
  let measuredSent = 0;
  // Open loop: message k is due at start + k * interval; its latency counts from that time, so a
  // stalled sender shows up in the figures instead of hiding (no coordinated omission).
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (start + scheduled * intervalMs <= now && start + scheduled * intervalMs < measureTo) {
        const due = start + scheduled * intervalMs;
        send(pairs[scheduled % pairs.length]!, due);
        if (due >= measureFrom) measuredSent += 1;
        scheduled += 1;
      }
      if (start + scheduled * intervalMs >= measureTo) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await drain(5000);
  mode = 'off';
  return {
    ...counts,
    histogram: hdr.encodeIntoCompressedBase64(histogram),
    measuredSent,
    measuredReceived,
  };
}

serveControl(
  {
    mint: async (users: string[]) => {
      for (const user of users) {
        if (!tokens.has(user)) tokens.set(user, await mintToken(keys, { sub: user, ttl: 3600 }));
      }
      return tokens.size;
    },
    connect: (req: ConnectRequest) => connectMany(req),
    closeIdle: async (kind: SystemKind) => {
      const n = await closeAll(idle.get(kind)!);
      idle.set(kind, []);
      return n;
    },
    openPairs: (req: PairsRequest) => openPairs(req),
    pumpStart: ({ kind, window: w, bodyBytes }: { kind: SystemKind; window: number; bodyBytes: number }) => {
      pairs = pairSets.get(kind)!;
      resetCounts();
      window = w;
      filler = 'x'.repeat(bodyBytes);
      mode = 'pump';
      pairs.forEach(pump);
      return true;
    },
    mark: () => {
      const { user, system } = process.cpuUsage();
      return { ...counts, at: performance.now(), cpuMs: (user + system) / 1000 };
    },
    pumpStop: async () => {
      mode = 'off';
      await drain(5000);
      return { ...counts };
    },
    latency: (req: LatencyRequest) => runLatency(req),
    closePairs: async (kind: SystemKind) => {
      mode = 'off';
      const n = await closeAll(pairSets.get(kind)!.flatMap((p) => [p.sender, p.receiver]));
      pairSets.set(kind, []);
      pairs = [];
      return n;
    },
    shutdown: () => {
      const all = [...idle.values(), ...pairSets.values()].flat();
      for (const x of all) {
        if (x instanceof WebSocket) x.terminate();
        else {
          x.sender.terminate();
          x.receiver.terminate();
        }
      }
      setImmediate(() => process.exit(0));
      return true;
    },
  },
  { pid: process.pid },
);
