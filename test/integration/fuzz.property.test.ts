/**
 * Fuzzing, as properties: whatever comes in over HTTP, WebSocket or NATS, a node keeps serving.
 * Real processes (nats-server, then `chatgate auth` and `chatgate gateway` with its admin port and
 * a recorder observing every actor, as children of the CLI), so that a crash is an exit. After
 * every run: both processes alive, `/healthz` 200, the admin port answers, a message from one
 * live session reaches another, and a new session is admitted by the auth service (not
 * degraded, which is what a node that no longer hears auth replies does). fast-check prints the
 * seed and the shrunk input of a failure.
 *
 * Runs are few per property (the whole file must stay well under a minute on two shared cores);
 * each run sends several inputs.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { createInbox } from '@nats-io/nats-core';
import { encodeChatMessage } from '../../src/gateway/codec.ts';
import { subjects } from '../../src/subjects.ts';
import { rawRequest, startFleet, type Fleet } from '../harness/fleet.ts';
import type { TestClient } from '../harness/client.ts';

let fleet: Fleet;
let a: TestClient;
let b: TestClient;
let sentinels = 0;

beforeAll(async () => {
  fleet = await startFleet({ gatewayEnv: (home) => ({ RECORD_TO: `file:${join(home, 'recording.jsonl')}` }) });
  a = (await fleet.session('fz-a', { rooms: ['fz-room'] })).client;
  b = (await fleet.session('fz-b', { rooms: ['fz-room'] })).client;
  for (const c of [a, b]) {
    const joined = await c.request({ type: 'join', id: 'j', room: 'fz-room' });
    if (joined.type !== 'ack') throw new Error(`join refused: ${JSON.stringify(joined)}`);
  }
});
afterAll(async () => {
  await fleet?.stop();
});

/** What every run ends with: the node is alive and serves. */
async function stillServes(): Promise<void> {
  await fleet.healthy();
  await fleet.chats(a, b, 'fz-b');
}

const nested = (depth: number, open: string, close: string) => `${open.repeat(depth)}0${close.repeat(depth)}`;
const deepText = fc
  .record({ depth: fc.integer({ min: 0, max: 20_000 }), kind: fc.constantFrom<[string, string]>(['[', ']'], ['{"a":', '}']) })
  .map(({ depth, kind }) => nested(depth, kind[0], kind[1]));
const oddString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('', '.', '*', '>', 'fz-a', 'fz-b', 'fz-room', '\u0000', '\ud800', '\udc00x', '😀'.repeat(200), 'a'.repeat(9000)),
);
const hugeNumber = fc.constantFrom('1e999', '-1e999', '123456789012345678901234567890', '-0', '0.0000000000000000000001', '9007199254740993');

// ---------------------------------------------------------------------------------------------
// HTTP

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const upgradeHeaders = ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'];
const headerName = fc.oneof(
  fc.constantFrom(
    'Host', 'Upgrade', 'Connection', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version', 'Sec-WebSocket-Protocol',
    'Sec-WebSocket-Extensions', 'Origin', 'Authorization', 'X-Forwarded-For', 'Content-Length', 'Transfer-Encoding',
    'Cookie', 'Expect', 'Content-Type',
  ),
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 20 }),
);
const headerValue = fc.oneof(
  fc.constantFrom(
    'websocket', 'Upgrade', '13', '8', '0', '-1', '99999999999999999999', 'chunked', 'chatgate.v1, bearer.x', ',,,',
    'bearer.', 'permessage-deflate; client_max_window_bits=99', 'Bearer x', 'Bearer', '100-continue',
    'chatgate_admin=1.x', '1.2.3.4, ::1, garbage', 'application/json',
  ),
  fc.string({ unit: 'binary', maxLength: 200 }),
);
const target = fc.oneof(
  fc.constantFrom(
    '/', '//', '//:99999', '//[', '/ws', '//ws', '/ws?x=1', '*', 'http://[', 'http://x:99999/ws', 'ws://x/ws', '/healthz',
    '/readyz', '/metrics', '/api/events?session=', '/api/connections', '/api/counts', '/login', '/dev/token', '/%',
    '/%zz', '/..%2f..', '/\u00ff', `/${'a'.repeat(10_000)}`,
  ),
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/${s}`),
);
const httpRequest = fc
  .record({
    port: fc.constantFrom<'gateway' | 'admin'>('gateway', 'admin'),
    method: fc.oneof(fc.constantFrom('GET', 'POST', 'HEAD', 'OPTIONS', 'PUT', 'CONNECT', 'PRI', 'G T'), fc.string({ unit: 'binary-ascii', maxLength: 8 })),
    target,
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', ''),
    upgrade: fc.boolean(),
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }),
    body: fc.oneof(fc.constant(''), fc.string({ unit: 'binary', maxLength: 300 })),
    lineEnd: fc.constantFrom('\r\n', '\n', '\r'),
  })
  .map((r) => ({
    port: r.port,
    text: [
      `${r.method} ${r.target} ${r.version}`,
      'Host: 127.0.0.1',
      ...(r.upgrade ? upgradeHeaders : []),
      ...r.headers.map(([name, value]) => `${name}: ${value}`),
      '',
      r.body,
    ].join(r.lineEnd),
  }));

describe('fuzz - HTTP', () => {
  it('fuzz - raw HTTP requests never stop a gateway', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(httpRequest, { minLength: 1, maxLength: 4 }), async (requests) => {
        for (const r of requests) {
          await rawRequest(r.port === 'gateway' ? fleet.port : fleet.adminPort, Buffer.from(r.text, 'utf8'));
        }
        await stillServes();
      }),
      { numRuns: 100 },
    );
  });

  it('fuzz - raw bytes after a WebSocket handshake never stop a gateway', async () => {
    const frameBytes = fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      // A frame header with chosen bits, length and mask, then some payload.
      fc
        .record({
          fin: fc.boolean(),
          rsv: fc.integer({ min: 0, max: 7 }),
          opcode: fc.integer({ min: 0, max: 15 }),
          masked: fc.boolean(),
          length: fc.constantFrom(0, 5, 125, 126, 127),
          extended: fc.constantFrom(0n, 5n, 65_535n, 70_000n, 2n ** 63n - 1n),
          payload: fc.uint8Array({ maxLength: 200 }),
        })
        .map((f) => {
          const head = Buffer.alloc(14);
          head[0] = (f.fin ? 0x80 : 0) | (f.rsv << 4) | f.opcode;
          head[1] = (f.masked ? 0x80 : 0) | f.length;
          let at = 2;
          if (f.length === 126) at = head.writeUInt16BE(Number(f.extended & 0xffffn), at);
          if (f.length === 127) at = head.writeBigUInt64BE(f.extended, at);
          if (f.masked) at = head.writeUInt32BE(0x01020304, at);
          return Buffer.concat([head.subarray(0, at), f.payload]);
        }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(frameBytes, { minLength: 1, maxLength: 4 }), fc.boolean(), async (frames, authenticated) => {
        const headers = [...upgradeHeaders, 'Sec-WebSocket-Protocol: chatgate.v1'];
        if (authenticated) headers.push(`Authorization: Bearer ${await fleet.token('fz-raw')}`);
        await new Promise<void>((resolve, reject) => {
          const socket = tcpConnect({ port: fleet.port, host: '127.0.0.1' });
          const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error('the node neither answered nor closed within 5 s'));
          }, 5000);
          let sent = false;
          socket.on('data', () => {
            // The 101 (or whatever came): now the frames, then our end of the connection.
            if (sent) return;
            sent = true;
            socket.end(Buffer.concat(frames));
          });
          socket.on('error', () => {});
          socket.on('close', () => {
            clearTimeout(timer);
            resolve();
          });
          socket.on('connect', () => socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.join('\r\n')}\r\n\r\n`));
        });
        await stillServes();
      }),
      { numRuns: 60 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// WebSocket frames

const frameId = fc.oneof(fc.string({ maxLength: 140 }), fc.integer(), fc.double(), fc.constant(null), fc.boolean());
const anyJson = fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' });
const destination = fc.oneof(
  fc.record({ user: oddString }),
  fc.record({ room: oddString }),
  fc.record({ user: oddString, room: oddString }),
  anyJson,
);
const jsonFrame = fc.oneof(
  fc.record({ type: fc.constant('auth'), token: fc.oneof(oddString, anyJson) }),
  fc.record({ type: fc.constant('send'), id: frameId, to: destination, body: anyJson }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constantFrom('join', 'leave'), id: frameId, room: oddString }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant('refresh'), id: frameId, token: oddString }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant('ping'), id: frameId }, { requiredKeys: ['type'] }),
  fc.dictionary(fc.oneof(fc.constantFrom('type', 'id', 'to', 'body', '__proto__', 'constructor'), fc.string()), anyJson),
  anyJson,
);

type WsInput =
  | { kind: 'text'; text: string }
  | { kind: 'binary'; bytes: Uint8Array }
  | { kind: 'bad-utf8'; bytes: Uint8Array }
  | { kind: 'fragments'; parts: string[] }
  | { kind: 'ping'; bytes: Uint8Array };

const wsInput: fc.Arbitrary<WsInput> = fc.oneof(
  jsonFrame.map((f) => ({ kind: 'text' as const, text: JSON.stringify(f) ?? 'null' })),
  deepText.map((body) => ({ kind: 'text' as const, text: `{"type":"send","id":"deep","to":{"user":"fz-b"},"body":${body}}` })),
  deepText.map((text) => ({ kind: 'text' as const, text })),
  hugeNumber.map((n) => ({ kind: 'text' as const, text: `{"type":"send","id":${n},"to":{"user":"fz-b"},"body":${n}}` })),
  fc.string({ unit: 'binary', maxLength: 300 }).map((text) => ({ kind: 'text' as const, text })),
  fc.constantFrom(70_000, 65_537).map((n) => ({ kind: 'text' as const, text: `{"type":"send","id":1,"to":{"user":"fz-b"},"body":"${'x'.repeat(n)}"}` })),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => ({ kind: 'binary' as const, bytes })),
  fc.uint8Array({ minLength: 1, maxLength: 50 }).map((bytes) => ({ kind: 'bad-utf8' as const, bytes: Uint8Array.from([0xc3, 0x28, ...bytes, 0xff]) })),
  fc.array(fc.string({ maxLength: 40 }), { minLength: 2, maxLength: 5 }).map((parts) => ({ kind: 'fragments' as const, parts })),
  jsonFrame.map((f) => {
    const text = JSON.stringify(f) ?? 'null';
    const cut = Math.floor(text.length / 2);
    return { kind: 'fragments' as const, parts: [text.slice(0, cut), text.slice(cut)] };
  }),
  fc.uint8Array({ maxLength: 125 }).map((bytes) => ({ kind: 'ping' as const, bytes })),
);

function sendInput(client: TestClient, input: WsInput): void {
  const { ws } = client;
  if (ws.readyState !== ws.OPEN) return;
  switch (input.kind) {
    case 'text':
      return ws.send(input.text);
    case 'binary':
      return ws.send(input.bytes, { binary: true });
    case 'bad-utf8':
      return ws.send(input.bytes, { binary: false });
    case 'fragments':
      input.parts.forEach((part, i) => ws.send(part, { binary: false, fin: i === input.parts.length - 1 }));
      return;
    case 'ping':
      return ws.ping(input.bytes);
  }
}

describe('fuzz - WebSocket', () => {
  let run = 0;
  it('fuzz - WebSocket frames on authenticated and unauthenticated sockets never stop a gateway', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(wsInput, { minLength: 1, maxLength: 6 }), fc.boolean(), async (inputs, authenticated) => {
        run += 1;
        const session = authenticated ? await fleet.session(`fz-ws-${run}`, { rooms: '*' }) : undefined;
        const client = session?.client ?? fleet.client({ via: 'none' });
        await client.opened;
        // An authenticated session is followed by the inspector (raw observations), every one by
        // the recorder (redacted ones).
        const unfollow = session ? await fleet.follow(session.welcome.session as string) : () => {};
        for (const input of inputs) sendInput(client, input);
        // The node has handled every frame once it answers a ping sent after them, or closed.
        const end = `end-${run}`;
        if (client.ws.readyState === client.ws.OPEN) client.send({ type: 'ping', id: end });
        await client.next((f) => f.type === 'pong' && f.id === end, 5000).catch((err: Error) => {
          if (client.closeCode === undefined) throw err;
        });
        unfollow();
        client.close();
        await stillServes();
      }),
      { numRuns: 100 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// NATS

const HUGE = Buffer.alloc(512 * 1024, 'a b\n');
/** Ids for bus payloads: never the checking sessions' users, whom a well-formed revocation would close. */
const busString = oddString.filter((s) => !s.startsWith('fz-') && !s.startsWith('fresh-'));
const natsPayload = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }),
  fc.constantFrom('', '\n', ' \n', 'a b\n{}', ' 1e999\n{}', 'x 1\n{"type":"message",', ' 1\n{"type":"message",}', '\ud800', HUGE),
  deepText,
  anyJson.map((v) => JSON.stringify(v) ?? ''),
  fc.record({ keys: fc.array(anyJson, { maxLength: 3 }) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  fc
    .record({ jti: busString, sub: busString, at: fc.oneof(fc.double(), fc.integer(), hugeNumber), token: fc.oneof(busString, anyJson) }, { requiredKeys: [] })
    .map((v) => JSON.stringify(v)),
  fc.record({ origin: fc.string({ unit: 'binary', maxLength: 30 }), ts: fc.oneof(hugeNumber, fc.string({ maxLength: 20 })), frame: fc.string({ unit: 'binary', maxLength: 200 }) })
    .map((m) => `${m.origin} ${m.ts}\n${m.frame}`),
);
const natsSubject = fc.constantFrom(
  subjects.user('fz-a'),
  subjects.room('fz-room'),
  subjects.authJwksAnnounce,
  subjects.authVerify,
  subjects.authJwks,
  subjects.authRevoke,
);

describe('fuzz - NATS', () => {
  it('fuzz - NATS payloads on every subject a node listens to never stop the gateway or the auth service', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ subject: natsSubject, payload: natsPayload, reply: fc.boolean() }), { minLength: 1, maxLength: 6 }),
        async (messages) => {
          for (const m of messages) {
            fleet.nc.publish(m.subject, m.payload, m.reply ? { reply: createInbox() } : undefined);
          }
          // From the same connection, after them: once `a` has this, the gateway has handled them all.
          const nonce = `sentinel-${(sentinels += 1)}`;
          fleet.nc.publish(
            subjects.user('fz-a'),
            encodeChatMessage('', { msgId: nonce, from: 'fuzz', to: { user: 'fz-a' }, body: nonce, ts: Date.now() }),
          );
          await fleet.nc.flush();
          await a.next((f) => f.type === 'message' && f.msgId === nonce);
          await stillServes();
        },
      ),
      { numRuns: 100 },
    );
  });
});
