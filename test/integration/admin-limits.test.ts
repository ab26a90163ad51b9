/**
 * The admin server's documented bounds (docs/inspector.md): at most `maxStreams` event streams,
 * a stream that its reader does not keep up with gets `overflow` and ends, five logins per second
 * per address, a Content-Security-Policy on every page, and no token minting outside dev mode.
 */
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { startAdminServer, type AdminServer } from '../../src/admin/server.ts';
import { SseStream } from '../../src/admin/sse.ts';

const TOKEN = 'admin-token-for-limit-tests-0123';
const auth = { authorization: `Bearer ${TOKEN}` };

describe('admin - limits', () => {
  let stack: Stack;
  let admin: AdminServer;

  beforeAll(async () => {
    stack = await startStack();
    // No `demo`: what `chatgate gateway --admin-port` runs, outside dev mode.
    admin = await startAdminServer({ gateway: stack.gateways[0]!, port: 0, token: TOKEN, maxStreams: 2 });
  });
  afterAll(async () => {
    await admin?.close();
    await stack?.stop();
  });

  it('admin - event streams beyond maxStreams get 503; closing one frees its place', async () => {
    const open = () => {
      const abort = new AbortController();
      return fetch(`${admin.url}api/counts`, { headers: auth, signal: abort.signal }).then((res) => ({ res, abort }));
    };
    const first = await open();
    const second = await open();
    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    const third = await open();
    expect(third.res.status).toBe(503);
    expect(third.res.headers.get('retry-after')).toBe('5');
    first.abort.abort();
    // The server notices the reader gone: bounded wait for the place to come free.
    const deadline = Date.now() + 5000;
    let again = await open();
    while (again.res.status === 503 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      again = await open();
    }
    expect(again.res.status).toBe(200);
    second.abort.abort();
    again.abort.abort();
  });

  it('admin - more than five login attempts a second from one address get 429', async () => {
    const started = performance.now();
    const attempts = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${admin.url}login`, { method: 'POST', body: new URLSearchParams({ token: 'wrong' }), redirect: 'manual' }),
      ),
    );
    const elapsedS = (performance.now() - started) / 1000;
    const statuses = attempts.map((r) => r.status);
    const refused = statuses.filter((s) => s === 401).length;
    const limited = statuses.filter((s) => s === 429).length;
    expect(refused + limited).toBe(20);
    // A burst of five, then five a second: on a loaded machine the twenty take a while, and the
    // bucket refills meanwhile, so the bound grows with the time they took.
    expect(refused).toBeGreaterThanOrEqual(5);
    expect(refused).toBeLessThanOrEqual(5 + Math.ceil(5 * elapsedS));
    expect(limited).toBeGreaterThan(0);
  });

  it('admin - pages carry a Content-Security-Policy that allows only their own origin', async () => {
    const res = await fetch(admin.url);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    const directives = Object.fromEntries(
      csp.split(';').map((d) => d.trim()).filter(Boolean).map((d) => [d.split(' ')[0], d.split(' ').slice(1).join(' ')]),
    );
    expect(directives).toMatchObject({
      'default-src': "'none'",
      'script-src': "'self'",
      'connect-src': "'self'",
      'frame-ancestors': "'none'",
      'form-action': "'self'",
      'base-uri': "'none'",
    });
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('admin - outside dev mode there is no /dev/token and no demo page', async () => {
    const mint = await fetch(`${admin.url}dev/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: '{"user":"dave"}',
    });
    expect(mint.status).toBe(404);
    expect((await fetch(`${admin.url}demo`, { headers: auth })).status).toBe(404);
  });
});

describe('admin - event stream overflow', () => {
  let server: Server;
  let streams: SseStream[] = [];
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      streams.push(new SseStream(res, 4096));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('admin - a stream whose reader falls behind gets overflow and ends; nothing is written after', async () => {
    const port = (server.address() as { port: number }).port;
    streams = [];
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8');
    // The reader does not read while the node writes.
    socket.pause();
    socket.on('data', (d: string) => void (received += d));
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (streams.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const stream = streams[0]!;
    const chunk = 'x'.repeat(1000);
    let sent = 0;
    for (; sent < 10_000 && !stream.closed; sent++) stream.send('line', { n: sent, chunk });
    expect(stream.closed).toBe(true);
    stream.send('line', { n: 'after', chunk });
    socket.resume();
    // The response is over when its last (empty) chunk has come: bounded wait for it.
    const until = Date.now() + 5000;
    while (!received.endsWith('\r\n0\r\n\r\n') && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    expect(received.endsWith('\r\n0\r\n\r\n'), 'the response ended').toBe(true);
    const events = [...received.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    expect(events.at(-1)).toBe('overflow');
    expect(events.filter((e) => e === 'line').length).toBeLessThan(sent);
    expect(received).not.toContain('"n":"after"');
  });
});
