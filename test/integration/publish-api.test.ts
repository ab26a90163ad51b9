/**
 * The server-side publish API on a locked-down bus (the authorization block `chatgate nats`
 * writes): over NATS only the api role may ask, and HTTP `POST /api/publish` takes API_TOKEN.
 * Recipients get a normal `message` with `system: true`; bad inputs get their status and never
 * publish anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import { errors, type NatsConnection } from '@nats-io/nats-core';
import { startNatsServer, type NatsServer } from '../../src/bus/nats-server.ts';
import { ensureRoleCredentials } from '../../src/bus/credentials.ts';
import { authorizationConfig } from '../../src/bus/server-config.ts';
import type { BusRole } from '../../src/bus/permissions.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { startAuthService, type AuthService } from '../../src/auth/service.ts';
import { startGateway, type Gateway } from '../../src/gateway/gateway.ts';
import { loadSigningKeys, type SigningKeys } from '../../src/auth/keys.ts';
import { mintToken } from '../../src/auth/tokens.ts';
import { subjects } from '../../src/subjects.ts';
import { TestClient } from '../harness/client.ts';

const API_TOKEN = 'api-token-0123456789abcdef';
let home: string;
let server: NatsServer | undefined;
let auth: AuthService | undefined;
let keys: SigningKeys;
const gateways: Gateway[] = [];
const connections: NatsConnection[] = [];
const clients: TestClient[] = [];

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'chatgate-api-'));
  server = await startNatsServer({
    port: -1,
    jetstreamDir: join(home, 'js'),
    authorization: authorizationConfig(await ensureRoleCredentials(home)),
  });
  keys = await loadSigningKeys(home);
  auth = await startAuthService({ natsUrl: server.url, home });
  for (const apiToken of [API_TOKEN, undefined]) {
    gateways.push(
      await startGateway({ natsUrl: server.url, natsHome: home, port: 0, host: '127.0.0.1', apiToken, maxMessageBytes: 4096 }),
    );
  }
});
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(connections.map((nc) => closeNats(nc)));
  await Promise.all(gateways.map((g) => g.close()));
  await auth?.close();
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

async function session(sub: string, rooms: string[] = []) {
  const client = new TestClient(gateways[0]!.url, { token: await mintToken(keys, { sub, rooms }) });
  clients.push(client);
  await client.type('welcome');
  return client;
}

async function as(role: BusRole) {
  const nc = await connectNats(server!.url, `test-${role}`, { role, home });
  connections.push(nc);
  const refusals: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) refusals.push(s.error.subject);
    }
  })();
  return { nc, refusals };
}

const post = (port: number, body: string, headers: Record<string, string> = { authorization: `Bearer ${API_TOKEN}` }) =>
  fetch(`http://127.0.0.1:${port}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    signal: AbortSignal.timeout(5000),
  });

describe('publish api', () => {
  it('publish api - the api role publishes over NATS; recipients get a system message from NAME', async () => {
    const bob = await session('api-bob');
    const { nc } = await as('api');
    const reply = await nc.request(
      subjects.apiPublish,
      JSON.stringify({ to: { user: 'api-bob' }, body: { text: 'deploy done' }, from: 'ci-bot' }),
      { timeout: 5000 },
    );
    const answer = reply.json<{ msgId: string; pos: string }>();
    // Durable delivery (the default): stored, with its position.
    expect(answer).toEqual({ msgId: expect.any(String), pos: expect.any(String) });
    expect(await bob.next((f) => f.type === 'message')).toMatchObject({
      msgId: answer.msgId,
      from: 'ci-bot',
      system: true,
      to: { user: 'api-bob' },
      body: { text: 'deploy done' },
    });
    const bad = await nc.request(subjects.apiPublish, JSON.stringify({ to: { user: 'api-bob' }, from: 'x' }), { timeout: 5000 });
    expect(bad.json()).toMatchObject({ error: { code: 'bad_request' } });
  });

  it('publish api - only the api role may ask: the gateway and auth roles are refused, and the api role has nothing else under chatgate.v1.api', async () => {
    for (const role of ['gateway', 'auth'] as const) {
      const { nc, refusals } = await as(role);
      nc.publish(subjects.apiPublish, JSON.stringify({ to: { user: 'api-bob' }, body: 'forged', from: role }));
      await nc.flush();
      await expect.poll(() => refusals, { timeout: 5000 }).toContain(subjects.apiPublish);
    }
    const { nc, refusals } = await as('api');
    nc.publish('chatgate.v1.api.other', '{}');
    await nc.flush();
    await expect.poll(() => refusals, { timeout: 5000 }).toContain('chatgate.v1.api.other');
  });

  it('publish api - HTTP: 200 with msgId to a room; recipients in the room get it', async () => {
    const room = 'api-news';
    const carol = await session('api-carol', [room]);
    expect(await carol.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
    const res = await post(gateways[0]!.port, JSON.stringify({ to: { room }, body: 'breaking', from: 'newsroom', key: 'k1' }));
    expect(res.status).toBe(200);
    const { msgId, pos } = (await res.json()) as { msgId: string; pos: string };
    expect(await carol.next((f) => f.type === 'message')).toMatchObject({ msgId, pos, from: 'newsroom', system: true, body: 'breaking' });
    // The same key again: the first message's msgId and pos, and nothing delivered twice.
    const again = await post(gateways[0]!.port, JSON.stringify({ to: { room }, body: 'breaking', from: 'newsroom', key: 'k1' }));
    expect(await again.json()).toEqual({ msgId, pos });
    const barrier = await post(gateways[0]!.port, JSON.stringify({ to: { room }, body: 'after', from: 'newsroom' }));
    expect(barrier.status).toBe(200);
    await carol.next((f) => f.type === 'message' && f.body === 'after');
    expect(carol.messages().map((m) => m.body)).toEqual(['breaking', 'after']);
    // Stored like any other: the room's history has it, as a system message.
    carol.send({ type: 'history', id: 'h', room, limit: 10 });
    const history = await carol.next((f) => f.type === 'history');
    expect((history.messages as Array<Record<string, unknown>>)[0]).toMatchObject({ msgId, pos, system: true, from: 'newsroom' });
  });

  it('publish api - HTTP bad inputs: 401 bad or no token, 400 bad body, 413 too large, 404 without API_TOKEN, 405 not POST', async () => {
    const port = gateways[0]!.port;
    const good = JSON.stringify({ to: { user: 'api-x' }, body: 1, from: 'n' });
    expect((await post(port, good, { authorization: 'Bearer wrong-token-0123456789ab' })).status).toBe(401);
    expect((await post(port, good, { authorization: `Bearer ${API_TOKEN}x` })).status).toBe(401);
    expect((await post(port, good, {})).status).toBe(401);
    for (const body of ['not json', '{}', JSON.stringify({ to: { user: 'a', room: 'b' }, body: 1, from: 'n' }), JSON.stringify({ to: { user: 'a' }, body: 1, from: '' }), JSON.stringify({ to: { user: 'a' }, body: 1, from: 'n', extra: 1 })]) {
      const res = await post(port, body);
      expect(res.status, body).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'bad_request' } });
    }
    const huge = JSON.stringify({ to: { user: 'a' }, body: 'x'.repeat(5000), from: 'n' });
    expect((await post(port, huge)).status).toBe(413);
    // Without a Content-Length (chunked), the body is counted as it comes.
    const chunked = await new Promise<number | undefined>((resolve, reject) => {
      const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/api/publish', headers: { authorization: `Bearer ${API_TOKEN}` } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.write(huge.slice(0, 3000));
      req.end(huge.slice(3000));
    });
    expect(chunked).toBe(413);
    expect((await post(gateways[1]!.port, good)).status).toBe(404);
    const get = await fetch(`http://127.0.0.1:${port}/api/publish`, { signal: AbortSignal.timeout(5000) });
    expect(get.status).toBe(405);
  });

  it('publish api - HTTP 503 when the node cannot publish (its NATS connection is gone)', async () => {
    const extra = await startGateway({ natsUrl: server!.url, natsHome: home, port: 0, host: '127.0.0.1', apiToken: API_TOKEN });
    gateways.push(extra);
    await extra.nc.close();
    const res = await post(extra.port, JSON.stringify({ to: { user: 'a' }, body: 1, from: 'n' }));
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'unavailable' } });
  });
});
