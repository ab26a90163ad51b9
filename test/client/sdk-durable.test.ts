/**
 * The SDK against durable delivery (real gateways, a real nats-server with JetStream): a client
 * that was away resumes its inbox and its rooms on another node with nothing lost and nothing
 * twice; a send re-sent with its key after a drop is delivered once; history pages.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { closeClients, nextEvent, opened, sdkClient, trackedWebSocket, type SdkSocket } from '../harness/sdk.ts';
import type { ChatClient, MessageFrame } from '../../src/client/index.ts';
import { until } from '../harness/sync.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ nodes: 2 });
});
afterEach(() => closeClients());
afterAll(async () => {
  await stack?.stop();
});

const urls = () => stack.gateways.map((g) => g.url);

/** A client whose network can be cut: `offline` makes every new socket fail at once. */
function cuttable(user: string) {
  const sockets: SdkSocket[] = [];
  const net = { offline: false };
  const client = sdkClient({
    urls: urls(),
    token: () => stack.token(user, { rooms: '*' }),
    minDelayMs: 20,
    maxDelayMs: 100,
    WebSocket: trackedWebSocket((s) => {
      sockets.push(s);
      if (net.offline) s.terminate();
    }),
  });
  const received: MessageFrame[] = [];
  client.on('message', (m) => received.push(m));
  return { client, sockets, net, received };
}

const bodies = (ms: MessageFrame[]) => ms.map((m) => m.body);

describe('client SDK, durable delivery', () => {
  it('sdk durable - messages sent while a client is away arrive once, in order, when it resumes its inbox and rooms', async () => {
    const bob = cuttable('sdkd-bob');
    const alice: ChatClient = sdkClient({ urls: urls().slice(1), token: () => stack.token('sdkd-alice', { rooms: '*' }) });
    await Promise.all([opened(bob.client), opened(alice)]);
    await Promise.all([bob.client.join('sdkd-room'), alice.join('sdkd-room')]);
    await alice.send({ user: 'sdkd-bob' }, 'before 1');
    await alice.send({ room: 'sdkd-room' }, 'before 2');
    await until('the first two messages', () => bob.received.length === 2);
    expect(bob.client.position({ user: 'sdkd-bob' })).toEqual(expect.any(String));

    bob.net.offline = true;
    const lost = nextEvent(bob.client, 'state', (s) => s.state === 'reconnecting');
    bob.sockets.at(-1)!.terminate();
    await lost;
    for (let i = 1; i <= 3; i++) await alice.send({ user: 'sdkd-bob' }, `away ${i}`);
    for (let i = 4; i <= 5; i++) await alice.send({ room: 'sdkd-room' }, `away ${i}`);
    const resumed = nextEvent(bob.client, 'resumed');
    bob.net.offline = false;
    await resumed;
    await until('the messages sent while away', () => bob.received.length >= 7);
    // A sentinel after everything: nothing more (no duplicate) is on its way.
    await alice.send({ user: 'sdkd-bob' }, 'sentinel');
    await until('the sentinel', () => bodies(bob.received).includes('sentinel'));
    expect(bodies(bob.received)).toEqual(['before 1', 'before 2', 'away 1', 'away 2', 'away 3', 'away 4', 'away 5', 'sentinel']);
  });

  it('sdk durable - a fresh client whose socket drops before its first message gets everything sent meanwhile', async () => {
    const fresh = cuttable('sdkd-fresh');
    const sender: ChatClient = sdkClient({ urls: urls().slice(1), token: () => stack.token('sdkd-sender', { rooms: '*' }) });
    await Promise.all([opened(fresh.client), opened(sender)]);
    await Promise.all([fresh.client.join('sdkd-new-room'), sender.join('sdkd-new-room')]);
    // Nothing was ever sent to its inbox or its room, and still it knows where it stands.
    expect(fresh.client.position({ user: 'sdkd-fresh' })).toEqual(expect.any(String));
    expect(fresh.client.position({ room: 'sdkd-new-room' })).toEqual(expect.any(String));
    const gaps: unknown[] = [];
    fresh.client.on('gap', (g) => gaps.push(g));

    fresh.net.offline = true;
    const lost = nextEvent(fresh.client, 'state', (s) => s.state === 'reconnecting');
    fresh.sockets.at(-1)!.terminate();
    await lost;
    for (let i = 1; i <= 3; i++) await sender.send({ user: 'sdkd-fresh' }, `away ${i}`);
    for (let i = 4; i <= 5; i++) await sender.send({ room: 'sdkd-new-room' }, `away ${i}`);
    const resumed = nextEvent(fresh.client, 'resumed');
    fresh.net.offline = false;
    await resumed;
    await sender.send({ user: 'sdkd-fresh' }, 'sentinel');
    await until('the sentinel', () => bodies(fresh.received).includes('sentinel'));
    expect(bodies(fresh.received)).toEqual(['away 1', 'away 2', 'away 3', 'away 4', 'away 5', 'sentinel']);
    expect(gaps).toEqual([]);
  });

  it('sdk durable - a send cut off before its ack is re-sent with its key and delivered once', async () => {
    const carol = cuttable('sdkd-carol');
    const dave = sdkClient({ urls: urls().slice(1), token: () => stack.token('sdkd-dave') });
    await Promise.all([opened(carol.client), opened(dave)]);
    const got: unknown[] = [];
    dave.on('message', (m) => got.push(m.body));
    const sent = carol.client.send({ user: 'sdkd-dave' }, 'once');
    // Give the frame a moment to leave, as a flaky network would: cut once it is written.
    carol.sockets.at(-1)!.terminate();
    const ack = await sent;
    expect(ack.pos).toEqual(expect.any(String));
    await carol.client.send({ user: 'sdkd-dave' }, 'sentinel');
    await until('the sentinel', () => got.includes('sentinel'));
    expect(got.filter((b) => b === 'once')).toHaveLength(1);
  });

  it('sdk durable - history pages a room, oldest first, with positions', async () => {
    const erin = sdkClient({ urls: urls(), token: () => stack.token('sdkd-erin', { rooms: '*' }) });
    await opened(erin);
    await erin.join('sdkd-history');
    for (let i = 0; i < 5; i++) await erin.send({ room: 'sdkd-history' }, `h${i}`);
    const page = await erin.history({ room: 'sdkd-history' }, { limit: 3 });
    expect(page.messages.map((m) => m.body)).toEqual(['h2', 'h3', 'h4']);
    expect(page.more).toBe(true);
    const older = await erin.history({ room: 'sdkd-history' }, { before: page.messages[0]!.pos!, limit: 3 });
    expect(older.messages.map((m) => m.body)).toEqual(['h0', 'h1']);
  });
});
