import { afterEach, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { TestClient } from '../harness/client.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

const httpBase = (s: Stack, node = 0) => `http://127.0.0.1:${s.gateways[node]!.port}`;
const get = (s: Stack, path: string, headers: Record<string, string> = {}) => fetch(`${httpBase(s)}${path}`, { headers });

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('ops - probes', () => {
  it('ops - /healthz answers while the process serves; /readyz shows NATS and the breaker', async () => {
    stack = await startStack();
    const health = await get(stack, '/healthz');
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await get(stack, '/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, nats: 'connected', draining: false, breaker: 'closed', degraded: false });
  });

  it('ops - an open auth breaker is shown but does not make the node unready', async () => {
    stack = await startStack();
    stack.gateways[0]!.auth.breaker.send({ type: 'breaker.trip' });
    const ready = await get(stack, '/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, breaker: 'open', degraded: true });
  });

  it('ops - losing NATS makes the node unready', async () => {
    stack = await startStack();
    await stack.nats[0]!.stop();
    const body = await until(
      async () => ({ status: (await get(stack!, '/readyz')).status }),
      (v) => v.status === 503,
    );
    expect(body.status).toBe(503);
    expect((await get(stack, '/healthz')).status).toBe(200);
  });
});

describe('ops - metrics', () => {
  it('ops - /metrics reports connections by state, auth checks, frames, deliveries and closes, with no ids', async () => {
    stack = await startStack();
    const { client: a } = await stack.session(0, 'secret-user-id', { rooms: ['secret-room-id'] });
    const { client: b } = await stack.session(0, 'm-b');
    await a.request({ type: 'join', id: 1, room: 'secret-room-id' });
    await a.request({ type: 'send', id: 2, to: { user: 'm-b' }, body: 'x' });
    await b.type('message');
    b.ws.close(1000);
    await b.closed;
    const text = await until(
      async () => (await get(stack!, '/metrics')).text(),
      (t) => t.includes('chatgate_closes_total{code="1000"} 1'),
    );
    expect(text).toContain('chatgate_connections{state="active"} 1');
    expect(text).toContain('chatgate_auth_checks_total{outcome="ok"} 2');
    expect(text).toMatch(/chatgate_auth_check_seconds_bucket\{le="[\d.]+",outcome="ok"\}/);
    expect(text).toContain('chatgate_frames_in_total{type="send"} 1');
    expect(text).toContain('chatgate_frames_out_total{type="message"} 1');
    expect(text).toContain('chatgate_delivery_seconds_count 1');
    expect(text).toContain('chatgate_auth_breaker_state{state="closed"} 1');
    expect(text).toContain('chatgate_nats_reconnects_total 0');
    expect(text).toContain('chatgate_nodejs_eventloop_lag_seconds');
    expect(text).not.toContain('secret-user-id');
    expect(text).not.toContain('secret-room-id');
  });

  it('ops - with METRICS_TOKEN set, /metrics needs it', async () => {
    stack = await startStack({ gateway: { metricsToken: 'a-long-enough-metrics-secret' } });
    expect((await get(stack, '/metrics')).status).toBe(401);
    expect((await get(stack, '/metrics', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await get(stack, '/metrics', { authorization: 'Bearer a-long-enough-metrics-secret' })).status).toBe(200);
  });
});

describe('ops - backpressure', () => {
  it('ops - a reader that stops reading is closed with 4009, the node buffers at most its allowance, others keep receiving', async () => {
    const maxBufferedBytes = 256 * 1024;
    stack = await startStack({ gateway: { maxBufferedBytes, limits: { sendsPerSecond: 1e6, sendBurst: 1e6, sendBytesPerSecond: 1e9, sendBytesBurst: 1e9 }, userSendBytesPerSecond: 1e9, userSendBytesBurst: 1e9 } });
    const gateway = stack.gateways[0]!;
    const { client: flooder } = await stack.session(0, 'bp-flooder');
    const { client: stuck, welcome } = await stack.session(0, 'bp-stuck');
    const { client: healthy } = await stack.session(0, 'bp-healthy');
    const stuckSession = gateway.sessions.get(welcome.session as string)!;
    (stuck.ws as unknown as { _socket: { pause(): void } })._socket.pause();

    const body = 'y'.repeat(16 * 1024);
    let peak = 0;
    let healthyGot = 0;
    for (let batch = 0; batch < 100 && stuckSession.actor.getSnapshot().value !== 'closing' && gateway.sessions.has(stuckSession.id); batch++) {
      const acks = [];
      for (let i = 0; i < 20; i++) acks.push(flooder.request({ type: 'send', id: `${batch}.${i}`, to: { user: 'bp-stuck' }, body }));
      acks.push(flooder.request({ type: 'send', id: `h${batch}`, to: { user: 'bp-healthy' }, body: batch }));
      await Promise.all(acks);
      await healthy.next((f) => f.type === 'message' && f.body === batch);
      healthyGot += 1;
      peak = Math.max(peak, stuckSession.ws.bufferedAmount);
    }
    expect(peak).toBeLessThanOrEqual(maxBufferedBytes + body.length + 1024);
    expect(['closing', 'closed']).toContain(
      gateway.sessions.has(stuckSession.id) ? String(stuckSession.actor.getSnapshot().value) : 'closed',
    );
    expect(stuckSession.actor.getSnapshot().context.closeCode).toBe(4009);
    expect(healthyGot).toBeGreaterThan(0);
    expect(healthy.closeCode).toBeUndefined();
    // The stuck client reads again, answers the close, and the close is counted: the counter's
    // value, not its name (prom-client prints the name at 0).
    (stuck.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const text = await until(
      async () => (await get(stack!, '/metrics')).text(),
      (t) => t.includes('chatgate_closes_total{code="4009"} 1'),
    );
    expect(/^chatgate_slow_consumer_closes_total .*$/m.exec(text)?.[0]).toBe('chatgate_slow_consumer_closes_total 1');
  });
});

describe('ops - limits', () => {
  it('ops - sends over the session rate get error rate_limited with a retry hint; a sustained flood closes with 1008', async () => {
    stack = await startStack({ gateway: { limits: { sendsPerSecond: 1, sendBurst: 3, maxStrikes: 5 } } });
    const { client } = await stack.session(0, 'l-sender');
    for (let i = 0; i < 3; i++) {
      expect(await client.request({ type: 'send', id: i, to: { user: 'l-sender' }, body: i })).toMatchObject({ type: 'ack' });
    }
    const limited = await client.request({ type: 'send', id: 'over', to: { user: 'l-sender' }, body: 0 });
    expect(limited).toMatchObject({ type: 'error', id: 'over', code: 'rate_limited' });
    expect(limited.retryAfterMs as number).toBeGreaterThan(0);
    expect(limited.retryAfterMs as number).toBeLessThanOrEqual(1000);
    for (let i = 0; i < 10; i++) client.send({ type: 'send', id: `f${i}`, to: { user: 'l-sender' }, body: i });
    expect(await client.closedWith()).toBe(1008);
  });

  it('ops - a session may join at most MAX_ROOMS_PER_SESSION rooms', async () => {
    stack = await startStack({ gateway: { limits: { maxRooms: 2 } } });
    const { client } = await stack.session(0, 'l-rooms', { rooms: '*' });
    expect(await client.request({ type: 'join', id: 1, room: 'a' })).toMatchObject({ type: 'ack' });
    expect(await client.request({ type: 'join', id: 2, room: 'b' })).toMatchObject({ type: 'ack' });
    expect(await client.request({ type: 'join', id: 3, room: 'c' })).toMatchObject({ type: 'error', code: 'forbidden' });
    await client.request({ type: 'leave', id: 4, room: 'a' });
    expect(await client.request({ type: 'join', id: 5, room: 'c' })).toMatchObject({ type: 'ack' });
  });

  it('ops - connections beyond MAX_CONNECTIONS are closed with 1013', async () => {
    stack = await startStack({ gateway: { maxConnections: 2 } });
    await stack.session(0, 'l-c1');
    await stack.session(0, 'l-c2');
    const third = stack.client(0, { token: await stack.token('l-c3') });
    expect(await third.closedWith()).toBe(1013);
  });

  it('ops - handshakes beyond the per-IP rate get HTTP 429', async () => {
    stack = await startStack({ gateway: { handshakesPerIpPerSecond: 3 } });
    const token = await stack.token('l-ip');
    const results = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const c = stack!.client(0, { token });
        return c.opened.then(
          () => 'open',
          (err: Error) => err.message,
        );
      }),
    );
    expect(results.filter((r) => r === 'open').length).toBeLessThanOrEqual(3);
    expect(results).toContain('HTTP 429');
  });

  it('ops - a node going away accepts no new connection', async () => {
    stack = await startStack();
    const url = stack.gateways[0]!.url;
    const closing = stack.gateways[0]!.close();
    const late = new TestClient(url, { token: await stack.token('late') });
    await expect(late.opened).rejects.toThrow();
    late.close();
    await closing;
  });
});
