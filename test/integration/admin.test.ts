/**
 * The admin server without a browser: access rules, the counts and events streams (redacted),
 * the demo token endpoint's guards, and `chatgate gateway` refusing an admin port without a token.
 * The pages themselves are tested in a real browser in test/browser/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { runChatgate } from '../harness/process.ts';
import { startAdminServer, type AdminServer } from '../../src/admin/server.ts';
import { REDACTED } from '../../src/observe/observe.ts';

const TOKEN = 'admin-token-for-tests-0123456789';

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** An SSE stream read with fetch; `next` waits, bounded, for a matching event. */
async function openStream(url: string) {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` }, signal: abort.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const done = (async () => {
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
        }
      }
    } catch {
      // Aborted by close(): the stream is over.
    }
  })();
  return {
    events,
    async next(match: (e: SseEvent) => boolean, timeoutMs = 5000): Promise<SseEvent> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching event; got ${JSON.stringify(events)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      abort.abort();
      await done;
    },
  };
}

describe('admin', () => {
  let stack: Stack;
  let admin: AdminServer;
  const minted: string[] = [];

  beforeAll(async () => {
    stack = await startStack();
    admin = await startAdminServer({
      gateway: stack.gateways[0]!,
      port: 0,
      token: TOKEN,
      demo: { mint: async (user) => (minted.push(user), stack.token(user, { rooms: '*' })) },
    });
  });

  afterAll(async () => {
    await admin?.close();
    await stack?.stop();
  });

  it('admin - the API answers 401 without the token and accepts a login cookie', async () => {
    expect((await fetch(`${admin.url}api/connections`)).status).toBe(401);
    expect((await fetch(`${admin.url}api/connections?token=${TOKEN}`)).status).toBe(401);
    const login = await fetch(`${admin.url}login`, { method: 'POST', body: new URLSearchParams({ token: TOKEN }), redirect: 'manual' });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toContain(TOKEN);
    const withCookie = await fetch(`${admin.url}api/connections`, { headers: { cookie: cookie.split(';')[0]! } });
    expect(withCookie.status).toBe(200);
    const tampered = cookie.split(';')[0]!.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect((await fetch(`${admin.url}api/connections`, { headers: { cookie: tampered } })).status).toBe(401);
  });

  it('admin - counts follow the actors and a connection’s events arrive redacted', async () => {
    const counts = await openStream(`${admin.url}api/counts`);
    try {
      await counts.next((e) => e.event === 'counts' && (e.data.breaker as Record<string, number>).closed === 1);
      const { client, welcome } = await stack.session(0, 'carol', { rooms: '*' });
      await counts.next((e) => (e.data.connection as Record<string, number>)['open.active'] === 1);
      const list = (await (await fetch(`${admin.url}api/connections`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
        connections: Array<{ session: string; user: string; states: string[] }>;
      };
      expect(list.connections).toContainEqual(
        expect.objectContaining({ session: welcome.session, user: 'carol', states: ['open.active.token.valid', 'open.active.refresh.idle'] }),
      );

      const events = await openStream(`${admin.url}api/events?session=${welcome.session as string}`);
      try {
        await events.next((e) => e.event === 'snapshot');
        expect((await client.request({ type: 'join', id: 'j', room: 'lobby' })).type).toBe('ack');
        expect((await client.request({ type: 'send', id: 's', to: { room: 'lobby' }, body: 'secret words' })).type).toBe('ack');
        const fresh = await stack.token('carol', { rooms: '*' });
        expect((await client.request({ type: 'refresh', id: 'r', token: fresh })).type).toBe('ack');
        const send = await events.next((e) => (e.data.event as { type?: string } | undefined)?.type === 'frame.send');
        expect((send.data.event as { body: unknown }).body).toBe(REDACTED);
        const refresh = await events.next((e) => (e.data.event as { type?: string } | undefined)?.type === 'frame.refresh');
        expect((refresh.data.event as { token: unknown }).token).toBe(REDACTED);
        const state = await events.next((e) => e.data.kind === 'state');
        expect(JSON.stringify(state.data.state)).toContain('"token":"');
        expect(JSON.stringify(events.events)).not.toContain('secret words');
        expect(JSON.stringify(events.events)).not.toContain(fresh);

        client.close();
        await events.next((e) => e.event === 'end');
        await counts.next((e) => (e.data.connection as Record<string, number>)['open.active'] === undefined);
      } finally {
        await events.close();
      }
    } finally {
      await counts.close();
    }
  });

  it('admin - the demo token endpoint takes JSON from its own origin only', async () => {
    const post = (headers: Record<string, string>, body: string) =>
      fetch(`${admin.url}dev/token`, { method: 'POST', headers, body });
    expect((await post({ 'content-type': 'text/plain' }, '{"user":"dave"}')).status).toBe(415);
    expect((await post({ 'content-type': 'application/json', origin: 'http://evil.example' }, '{"user":"dave"}')).status).toBe(403);
    expect((await post({ 'content-type': 'application/json' }, '{"user":""}')).status).toBe(400);
    const ok = await post({ 'content-type': 'application/json' }, '{"user":"dave"}');
    expect(ok.status).toBe(200);
    const { token, url } = (await ok.json()) as { token: string; url: string };
    expect(url).toBe(stack.gateways[0]!.url);
    expect(token.split('.')).toHaveLength(3);
    expect(minted).toEqual(['dave']);
  });

  it('admin - chatgate gateway refuses an admin port without an admin token', async () => {
    const { code, stderr } = await runChatgate(['gateway'], { ADMIN_PORT: '0' });
    expect(code).toBe(2);
    expect(stderr.trim()).toBe('chatgate: --admin-port (ADMIN_PORT) needs --admin-token (ADMIN_TOKEN)');
  });
});
