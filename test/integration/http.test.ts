/**
 * The node's HTTP face and its documented limits, end to end on one in-process gateway each:
 * upgrade answers (docs/protocol.md "Connecting"), frames held during the token check, a
 * non-default MAX_MESSAGE_BYTES, SHUTDOWN_TIMEOUT_MS, and `unavailable` when NATS is gone.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import type { VerifyResult } from '../../machines/connection.machine.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

const WAIT_MS = 5000;
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** A raw TCP connection to the node, to write HTTP by hand and read the status line back. */
function rawSocket(port: number): Promise<Socket & { statusLine(): Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => void (received += d));
    const statusLine = () =>
      new Promise<string>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no status line in ${WAIT_MS} ms: ${JSON.stringify(received)}`)), WAIT_MS);
        const check = () => {
          const end = received.indexOf('\r\n');
          if (end >= 0) {
            clearTimeout(timer);
            res(received.slice(0, end));
          }
        };
        socket.on('data', check);
        socket.on('close', () => {
          check();
          clearTimeout(timer);
          rej(new Error(`socket closed: ${JSON.stringify(received)}`));
        });
        check();
      });
    socket.once('connect', () => resolve(Object.assign(socket, { statusLine })));
    socket.once('error', reject);
  });
}

/** Sends one upgrade request (or `overrides` of it) and returns the status code of the answer. */
async function upgradeStatus(s: Stack, overrides: { path?: string; method?: string; headers?: Record<string, string> } = {}) {
  const socket = await rawSocket(s.gateways[0]!.port);
  try {
    const headers: Record<string, string> = {
      host: '127.0.0.1',
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': KEY,
      ...overrides.headers,
    };
    const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.write(`${overrides.method ?? 'GET'} ${overrides.path ?? '/ws'} HTTP/1.1\r\n${head}\r\n`);
    return Number((await socket.statusLine()).split(' ')[1]);
  } finally {
    socket.destroy();
  }
}

describe('http - upgrade answers', () => {
  it('http - 101 for a good upgrade, 404 for another path, 400 for a bad key or version, 405 for another method', async () => {
    stack = await startStack();
    expect(await upgradeStatus(stack)).toBe(101);
    expect(await upgradeStatus(stack, { path: '/chat' })).toBe(404);
    expect(await upgradeStatus(stack, { headers: { 'sec-websocket-key': 'short' } })).toBe(400);
    expect(await upgradeStatus(stack, { headers: { 'sec-websocket-version': '12' } })).toBe(400);
    expect(await upgradeStatus(stack, { headers: { 'sec-websocket-protocol': 'a,,b' } })).toBe(400);
    expect(await upgradeStatus(stack, { method: 'POST' })).toBe(405);
  });

  it('http - /ws without an upgrade is 426', async () => {
    stack = await startStack();
    const res = await fetch(`http://127.0.0.1:${stack.gateways[0]!.port}/ws`);
    expect(res.status).toBe(426);
    expect(res.headers.get('upgrade')).toBe('websocket');
  });

  it('http - with ALLOWED_ORIGINS, any other Origin and no Origin get 403', async () => {
    stack = await startStack({ gateway: { allowedOrigins: ['https://chat.example'] } });
    expect(await upgradeStatus(stack, { headers: { origin: 'https://chat.example' } })).toBe(101);
    expect(await upgradeStatus(stack, { headers: { origin: 'https://evil.example' } })).toBe(403);
    expect(await upgradeStatus(stack, { headers: { origin: 'https://chat.example.evil' } })).toBe(403);
    expect(await upgradeStatus(stack)).toBe(403);
  });

  it('http - an upgrade on an already open connection while the node shuts down gets 426', async () => {
    stack = await startStack({ gateway: { shutdownTimeoutMs: 1000 } });
    // A session that never answers the node's close keeps the node draining until the deadline.
    const { client } = await stack.session(0, 'h-stuck');
    (client.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const socket = await rawSocket(stack.gateways[0]!.port);
    try {
      // The request has begun before the shutdown; the rest comes after it.
      socket.write('GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\n');
      await new Promise((r) => socket.write('', r));
      const closing = stack.gateways[0]!.close();
      socket.write(`connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${KEY}\r\n\r\n`);
      expect(await socket.statusLine()).toMatch(/^HTTP\/1\.1 426 /);
      await closing;
    } finally {
      socket.destroy();
    }
  });
});

/** A token check that waits until the test lets it through (the real auth service decides). */
function heldVerify(s: () => Stack) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let asked!: () => void;
  const wasAsked = new Promise<void>((r) => (asked = r));
  return {
    release,
    wasAsked,
    verify: async (token: string): Promise<VerifyResult> => {
      asked();
      await released;
      return s().gateways[0]!.auth.verify(token);
    },
  };
}

describe('http - limits end to end', () => {
  it('http - 32 frames held while the token is checked are all answered; a 33rd closes with 1008', async () => {
    const held = heldVerify(() => stack!);
    stack = await startStack({ gateway: { verify: held.verify } });
    const patient = stack.client(0, { via: 'frame', token: await stack.token('h-patient') });
    await held.wasAsked;
    for (let i = 0; i < 32; i++) patient.send({ type: 'send', id: i, to: { user: 'h-patient' }, body: i });
    const greedy = stack.client(0, { via: 'frame', token: await stack.token('h-greedy') });
    await greedy.opened;
    for (let i = 0; i < 33; i++) greedy.send({ type: 'send', id: i, to: { user: 'h-greedy' }, body: i });
    expect(await greedy.closedWith(WAIT_MS)).toBe(1008);
    expect(greedy.closeReason).toBe('too many frames before authentication');
    held.release();
    await patient.type('welcome');
    for (let i = 0; i < 32; i++) await patient.next((f) => f.type === 'ack' && f.id === i, WAIT_MS);
    expect(patient.closeCode).toBeUndefined();
  });

  it('http - a non-default MAX_MESSAGE_BYTES: a message of that size passes, one byte more closes with 1009', async () => {
    stack = await startStack({ gateway: { maxMessageBytes: 1024 } });
    const { client } = await stack.session(0, 'h-sizer');
    const frameOf = (size: number) => {
      const base = JSON.stringify({ type: 'send', id: 'x', to: { user: 'h-sizer' }, body: '' });
      return JSON.stringify({ type: 'send', id: 'x', to: { user: 'h-sizer' }, body: 'b'.repeat(size - base.length) });
    };
    expect(Buffer.byteLength(frameOf(1024))).toBe(1024);
    client.send(frameOf(1024));
    expect(await client.next((f) => f.type === 'ack' && f.id === 'x', WAIT_MS)).toBeDefined();
    client.send(frameOf(1025));
    expect(await client.closedWith(WAIT_MS)).toBe(1009);
  });

  it('http - SHUTDOWN_TIMEOUT_MS bounds a shutdown that a client never answers', async () => {
    stack = await startStack({ gateway: { shutdownTimeoutMs: 300 } });
    const { client } = await stack.session(0, 'h-silent');
    (client.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const gateway = stack.gateways[0]!;
    const started = Date.now();
    await gateway.close();
    // The close handshake alone would wait 5 s for the client; the deadline cut it short.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(gateway.sessions.size).toBe(0);
  });

  it('http - with NATS gone, send and join get error unavailable and the session stays', async () => {
    stack = await startStack();
    const { client } = await stack.session(0, 'h-cutoff', { rooms: ['r'] });
    await stack.nats[0]!.stop();
    const send = await client.request({ type: 'send', id: 's', to: { user: 'h-cutoff' }, body: 1 }, 15_000);
    expect(send).toMatchObject({ type: 'error', id: 's', code: 'unavailable' });
    const join = await client.request({ type: 'join', id: 'j', room: 'r' }, 15_000);
    expect(join).toMatchObject({ type: 'error', id: 'j', code: 'unavailable' });
    expect(client.closeCode).toBeUndefined();
  });
});
