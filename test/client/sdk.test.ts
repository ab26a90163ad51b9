/**
 * The SDK in Node against real gateways (in-process) on a real nats-server: connect with a token
 * function, rooms and users across nodes, reconnect over `urls` when a node goes away, the close
 * codes that stop it, token refresh, the outbox's keys and deadlines.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { startStack, type Stack } from '../harness/stack.ts';
import { closeClients, nextEvent, opened, sdkClient, trackedWebSocket, type SdkSocket } from '../harness/sdk.ts';
import { ClientError } from '../../src/client/index.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ nodes: 3 });
});
afterEach(() => closeClients());
afterAll(async () => {
  await stack?.stop();
});

/** Nodes 0 and 1; node 2 is the one a test closes. */
const urls = () => stack.gateways.slice(0, 2).map((g) => g.url);
const tokenFor = (sub: string, rooms: '*' | string[] = '*') => () => stack.token(sub, { rooms });

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe('client SDK', () => {
  it('sdk - connects with a token function, joins a room, and chats with users and rooms across nodes', async () => {
    const alice = sdkClient({ urls: [urls()[0]!], token: tokenFor('sdk-alice') });
    const bob = sdkClient({ urls: [urls()[1]!], token: tokenFor('sdk-bob') });
    await Promise.all([opened(alice), opened(bob)]);
    expect(alice.user).toBe('sdk-alice');
    await Promise.all([alice.join('sdk-lobby'), bob.join('sdk-lobby')]);

    const direct = nextEvent(bob, 'message', (m) => 'user' in m.to);
    const ack = await alice.send({ user: 'sdk-bob' }, { text: 'hi bob' });
    expect(ack.msgId).toMatch(/\S/);
    expect(await direct).toMatchObject({ from: 'sdk-alice', body: { text: 'hi bob' }, msgId: ack.msgId });

    const inRoom = nextEvent(alice, 'message', (m) => 'room' in m.to);
    await bob.send({ room: 'sdk-lobby' }, 'hello room');
    expect(await inRoom).toMatchObject({ from: 'sdk-bob', to: { room: 'sdk-lobby' }, body: 'hello room' });
  });

  it('sdk - when its node goes away (1001) it reconnects to the next URL, re-joins its rooms and keeps receiving', async () => {
    const leaving = stack.gateways[2]!;
    {
      const carol = sdkClient({ urls: [leaving.url, urls()[0]!], token: tokenFor('sdk-carol'), minDelayMs: 50, maxDelayMs: 200 });
      await opened(carol);
      await carol.join('sdk-moving');
      const reconnecting = nextEvent(carol, 'state', (s) => s.state === 'reconnecting');
      const resumed = nextEvent(carol, 'resumed');
      expect(carol.actor.getSnapshot().context.node).toBe(leaving.nodeId);
      await leaving.close();
      expect(await reconnecting).toMatchObject({ code: 1001 });
      await resumed;
      const dave = sdkClient({ urls: [urls()[1]!], token: tokenFor('sdk-dave') });
      await opened(dave);
      await dave.join('sdk-moving');
      const got = nextEvent(carol, 'message');
      await dave.send({ room: 'sdk-moving' }, 'after the move');
      expect(await got).toMatchObject({ from: 'sdk-dave', body: 'after the move' });
      expect(carol.actor.getSnapshot().context.node).toBe(stack.gateways[0]!.nodeId);
    }
  });

  it('sdk - an invalid token is retried once with a fresh one, then the client stops (4001), no loop', async () => {
    let calls = 0;
    const client = sdkClient({
      urls: urls(),
      token: async () => {
        calls++;
        return 'not-a-jwt';
      },
      minDelayMs: 10,
      maxDelayMs: 20,
    });
    const closed = await nextEvent(client, 'state', (s) => s.state === 'closed');
    expect(closed.failure).toEqual({ code: 4001, reason: 'invalid token' });
    expect(calls).toBe(2);
    await expect(client.send({ user: 'x' }, 1)).rejects.toMatchObject({ code: 'closed' });
  });

  it('sdk - an expired token (4002) makes it ask the token function again and connect', async () => {
    let calls = 0;
    const client = sdkClient({
      urls: urls(),
      token: async () => (calls++ === 0 ? stack.token('sdk-erin', { ttl: -60 }) : stack.token('sdk-erin')),
      minDelayMs: 10,
      maxDelayMs: 20,
    });
    const reconnect = nextEvent(client, 'state', (s) => s.state === 'reconnecting');
    expect(await reconnect).toMatchObject({ code: 4002 });
    await opened(client);
    expect(calls).toBe(2);
  });

  it('sdk - answers expiring with a refresh from the token function and stays in the same session', async () => {
    let calls = 0;
    const sockets: SdkSocket[] = [];
    const client = sdkClient({
      urls: urls(),
      // The first token expires in 20 s, within the node's 30 s warning: `expiring` comes at once.
      token: async () => (calls++ === 0 ? stack.token('sdk-frank', { ttl: 20 }) : stack.token('sdk-frank')),
      WebSocket: trackedWebSocket((s) => sockets.push(s)),
    });
    await opened(client);
    const session = client.session;
    const firstExp = client.actor.getSnapshot().context.exp!;
    // The refresh ack's exp, an hour on, reaches the machine.
    const deadline = Date.now() + 10_000;
    while (!(client.actor.getSnapshot().context.exp! > firstExp + 600)) {
      if (Date.now() > deadline) throw new Error(`no refresh: ${calls} token calls`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(calls).toBe(2);
    expect(sockets[0]!.written.filter((f) => f.type === 'refresh')).toHaveLength(1);
    expect(client.session).toBe(session);
    expect(sockets).toHaveLength(1);
  });

  it('sdk - a send in flight when the socket drops is sent again with the same key after the reconnect', async () => {
    const sockets: SdkSocket[] = [];
    const gina = sdkClient({
      urls: urls(),
      token: tokenFor('sdk-gina'),
      minDelayMs: 10,
      maxDelayMs: 20,
      WebSocket: trackedWebSocket((s) => sockets.push(s)),
    });
    await opened(gina);
    const first = sockets[0]!;
    const sent = gina.send({ user: 'sdk-nobody' }, 'resent');
    // The frame is written synchronously; cut the socket before any ack can come.
    const frame = first.written.find((f) => f.type === 'send')!;
    first.terminate();
    const ack = await sent;
    expect(ack.msgId).toMatch(/\S/);
    const again = sockets[1]!.written.find((f) => f.type === 'send')!;
    expect(frame.key).toEqual(expect.any(String));
    expect(again.key).toBe(frame.key);
    expect(again.id).not.toBe(frame.id);
  });

  it('sdk - sends made while disconnected wait in the outbox and go out in order once open', async () => {
    const sockets: SdkSocket[] = [];
    const henry = sdkClient({ urls: urls(), token: tokenFor('sdk-henry'), WebSocket: trackedWebSocket((s) => sockets.push(s)) });
    const ivy = sdkClient({ urls: urls(), token: tokenFor('sdk-ivy') });
    await opened(ivy);
    const got: unknown[] = [];
    ivy.on('message', (m) => got.push(m.body));
    const all = Promise.all([1, 2, 3, 4, 5].map((n) => henry.send({ user: 'sdk-ivy' }, n)));
    expect(henry.pendingSends).toBe(5);
    await all;
    const keys = sockets[0]!.written.filter((f) => f.type === 'send').map((f) => f.key);
    expect(new Set(keys).size).toBe(5);
    const deadline = Date.now() + 5000;
    while (got.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual([1, 2, 3, 4, 5]);
  });

  it('sdk - a send that cannot be delivered within its deadline fails with send_timeout; a full outbox refuses at once', async () => {
    const client = sdkClient({
      urls: [`ws://127.0.0.1:${await deadPort()}/ws`],
      token: tokenFor('sdk-jack'),
      sendTimeoutMs: 300,
      maxOutbox: 2,
      minDelayMs: 50,
      maxDelayMs: 100,
    });
    const a = client.send({ user: 'x' }, 1);
    const b = client.send({ user: 'x' }, 2);
    await expect(client.send({ user: 'x' }, 3)).rejects.toMatchObject({ code: 'outbox_full' });
    const started = Date.now();
    await expect(a).rejects.toBeInstanceOf(ClientError);
    await expect(b).rejects.toMatchObject({ code: 'send_timeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(client.state).toBe('reconnecting');
  });

  it('sdk - a forbidden send fails with the node code and does not block the sends behind it', async () => {
    const kim = sdkClient({ urls: urls(), token: tokenFor('sdk-kim', ['sdk-only']) });
    await opened(kim);
    await expect(kim.send({ room: 'sdk-elsewhere' }, 'x')).rejects.toMatchObject({ code: 'forbidden' });
    await expect(kim.join('sdk-elsewhere')).rejects.toMatchObject({ code: 'forbidden' });
    await expect(kim.send({ user: 'sdk-kim' }, 'still works')).resolves.toMatchObject({ msgId: expect.any(String) });
  });
});
