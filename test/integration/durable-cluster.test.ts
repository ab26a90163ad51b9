/**
 * Durable delivery on a 3-node NATS cluster with R3 streams: resume survives a NATS server killed
 * with SIGKILL (the users stream's leader) and a stream leader moved by a step-down. Two gateway
 * nodes on two different servers; the test's own connection only to find and move leaders.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel, sentinel } from '../harness/sync.ts';
import type { Frame, TestClient } from '../harness/client.ts';
import { USERS_STREAM } from '../../src/subjects.ts';

let stack: Stack;
let nc: NatsConnection;
beforeAll(async () => {
  stack = await startStack({
    nodes: 2,
    cluster: true,
    gateway: { delivery: 'durable', history: { replicas: 3 }, limits: { sendsPerSecond: 1e6, sendBurst: 1e6 } },
  });
  nc = await connect({ servers: stack.nats.map((s) => s.url) });
});
afterAll(async () => {
  await nc?.close();
  await stack?.stop();
});

const chat = (c: TestClient) => c.messages().filter((m) => !isSentinel(m));

/** Sends with a key until acknowledged: what a client does while a stream elects a new leader. */
async function sendSure(from: TestClient, to: string, body: string): Promise<Frame> {
  const deadline = Date.now() + 20_000;
  for (let attempt = 0; ; attempt++) {
    const reply = await from.request({ type: 'send', id: `${body}-${attempt}`, to: { user: to }, body, key: body }, 10_000);
    if (reply.type === 'ack') return reply;
    if (Date.now() > deadline) throw new Error(`never acked: ${JSON.stringify(reply)}`);
  }
}

async function leaderOf(stream: string): Promise<string> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).cluster?.leader ?? '';
}

describe('durable cluster - R3 streams', () => {
  it('durable cluster - the streams are R3, and resume works after the users stream leader is SIGKILLed and after a leader step-down', async () => {
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(USERS_STREAM)).config.num_replicas).toBe(3);
    const sender = (await stack.session(0, 'dc-sam')).client;
    const first = await stack.session(1, 'dc-ann');
    const m0 = await sendSure(sender, 'dc-ann', 'm0');
    await first.client.next((f) => f.body === 'm0');
    first.client.close();

    // The leader of the users stream dies without a goodbye.
    const leader = await leaderOf(USERS_STREAM);
    const victim = stack.nats.findIndex((_, i) => `chatgate-test-${i}` === leader);
    expect(victim).toBeGreaterThanOrEqual(0);
    stack.nats[victim]!.process.kill('SIGKILL');
    const m1 = await sendSure(sender, 'dc-ann', 'm1');
    await sendSure(sender, 'dc-ann', 'm2');
    // Resume on whichever gateway still has its first server, else either.
    const node = victim === 1 ? 0 : 1;
    const back = stack.client(node, { token: await stack.token('dc-ann'), query: { since: m0.pos as string } });
    expect((await back.type('welcome', 20_000)).recovered).toBe(true);
    await back.next((f) => f.body === 'm2', 10_000);
    expect(chat(back).map((m) => m.body)).toEqual(['m1', 'm2']);
    expect(chat(back)[0]!.pos).toBe(m1.pos);

    // The leader moves; a resume still finds everything, once.
    const before = await leaderOf(USERS_STREAM);
    await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${USERS_STREAM}`, '', { timeout: 10_000 });
    const moved = Date.now() + 15_000;
    while ((await leaderOf(USERS_STREAM).catch(() => before)) === before && Date.now() < moved) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await sendSure(sender, 'dc-ann', 'm3');
    const again = stack.client(node, { token: await stack.token('dc-ann'), query: { since: m1.pos as string } });
    expect((await again.type('welcome', 20_000)).recovered).toBe(true);
    await again.next((f) => f.body === 'm3', 10_000);
    await sentinel(sender, again, 'dc-ann', 20_000);
    expect(chat(again).map((m) => m.body)).toEqual(['m2', 'm3']);
  });
});
