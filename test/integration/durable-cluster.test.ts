/**
 * Durable delivery on a 3-node NATS cluster with R3 streams: resume survives a NATS server killed
 * with SIGKILL (the users stream's leader) and a stream leader moved by a step-down. Two gateway
 * nodes on two different servers; the test's own connection only to find and move leaders.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel } from '../harness/sync.ts';
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

/**
 * Sends with a key until acknowledged, as a client does while a stream elects a new leader (the
 * stream answers "no responders" at once until then): retries paced at 200 ms, within 30 s.
 */
async function sendSure(from: TestClient, to: string, body: string): Promise<Frame> {
  const deadline = Date.now() + 30_000;
  for (let attempt = 0; ; attempt++) {
    const reply = await from.request({ type: 'send', id: `${body}-${attempt}`, to: { user: to }, body, key: body }, 10_000);
    if (reply.type === 'ack') return reply;
    if (Date.now() > deadline) throw new Error(`never acked: ${JSON.stringify(reply)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function leaderOf(stream: string): Promise<string> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).cluster?.leader ?? '';
}

/** `attempt` until it resolves, paced at 200 ms, within 30 s. */
async function retried<T>(attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * A session of `user` on `node` resuming from `since`, as a client does: a session closed before
 * its welcome (1013 while the bus settles after a failure) is opened again, within a deadline.
 */
async function resume(node: number, user: string, since: string): Promise<{ client: TestClient; welcome: Frame }> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const client = stack.client(node, { token: await stack.token(user), query: { since } });
    try {
      return { client, welcome: await client.type('welcome', 20_000) };
    } catch (err) {
      if (client.closeCode === undefined || Date.now() > deadline) throw err;
    }
  }
}

describe('durable cluster - R3 streams', () => {
  it('durable cluster - the streams are R3, and resume works after the users stream leader is SIGKILLed and after a leader step-down', async () => {
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(USERS_STREAM)).config.num_replicas).toBe(3);
    // The leader of the users stream will die: the sender and the resumes use a gateway whose own
    // server survives (a gateway whose server dies reconnects elsewhere; that is not this test).
    const victimDeadline = Date.now() + 10_000;
    let leader = await leaderOf(USERS_STREAM);
    while (leader === '' && Date.now() < victimDeadline) leader = await leaderOf(USERS_STREAM);
    const victim = stack.nats.findIndex((_, i) => `chatgate-test-${i}` === leader);
    expect(victim).toBeGreaterThanOrEqual(0);
    const node = victim === 0 ? 1 : 0;
    const sender = (await stack.session(node, 'dc-sam')).client;
    const first = await stack.session(1 - node, 'dc-ann');
    const m0 = await sendSure(sender, 'dc-ann', 'm0');
    await first.client.next((f) => f.body === 'm0');
    first.client.close();

    // The leader of the users stream dies without a goodbye.
    stack.nats[victim]!.process.kill('SIGKILL');
    const m1 = await sendSure(sender, 'dc-ann', 'm1');
    await sendSure(sender, 'dc-ann', 'm2');
    const { client: back, welcome } = await resume(node, 'dc-ann', m0.pos as string);
    expect(welcome.recovered, JSON.stringify(back.frames)).toBe(true);
    await back.next((f) => f.body === 'm2', 10_000);
    expect(chat(back).map((m) => m.body), JSON.stringify(back.frames)).toEqual(['m1', 'm2']);
    expect(chat(back)[0]!.pos).toBe(m1.pos);

    // The leader moves; a resume still finds everything, once.
    // After the kill the JetStream API may time out until the meta leader is settled: retried.
    const before = await retried(() => leaderOf(USERS_STREAM));
    await retried(async () => {
      const reply = (await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${USERS_STREAM}`, '', { timeout: 5000 })).json<{ success?: boolean }>();
      if (!reply.success) throw new Error(`step-down refused: ${JSON.stringify(reply)}`);
    });
    await retried(async () => {
      if ((await leaderOf(USERS_STREAM)) === before) throw new Error('the leader has not moved yet');
    });
    await sendSure(sender, 'dc-ann', 'm3');
    const { client: again, welcome: welcomeAgain } = await resume(node, 'dc-ann', m1.pos as string);
    expect(welcomeAgain.recovered, JSON.stringify(again.frames)).toBe(true);
    await again.next((f) => f.body === 'm3', 10_000);
    await sendSure(sender, 'dc-ann', 'm4');
    await again.next((f) => f.body === 'm4', 10_000);
    expect(chat(again).map((m) => m.body), JSON.stringify(again.frames)).toEqual(['m2', 'm3', 'm4']);
  }, 90_000);
});
