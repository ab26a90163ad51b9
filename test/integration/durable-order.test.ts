/**
 * One session's durable sends keep their order across a failure with several in flight, against a
 * real nats-server: the first send is lost in a server crash, the ones behind it are sent while the
 * node reconnects, and the client then re-sends what failed, in order, with the same keys (as the
 * SDK does). The stream must hold them in the order they were sent, each once: the order in which a
 * message is FIRST stored is what every reader sees, and a re-send with the same key is answered
 * with the first storage.
 *
 * This is why a session's sends are stored one after another (SendOrder, docs/durability.md): were
 * the later sends published while the first was unanswered, they would be stored on the restarted
 * server before the first one's re-send.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNats, type NatsServer } from '../harness/nats.ts';
import { until } from '../harness/sync.ts';
import { pauseProcess } from '../harness/process.ts';
import { Delivery, type DeliveryMember } from '../../src/durable/delivery.ts';
import type { ChatMessage, Published } from '../../src/durable/publish.ts';
import { decodeChatMessage } from '../../src/gateway/codec.ts';
import { subjects } from '../../src/subjects.ts';
import { silentLogger } from '../../src/log.ts';

const servers: NatsServer[] = [];
let nc: NatsConnection | undefined;
let dir: string | undefined;
afterAll(async () => {
  await nc?.close();
  for (const s of servers) {
    s.process.kill('SIGCONT');
    await s.stop();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

const turn = () => new Promise((resolve) => setImmediate(resolve));

it('durable order - one session’s sends stay in order, each once, across a NATS crash with several in flight', async () => {
  dir = await mkdtemp(join(tmpdir(), 'chatgate-order-'));
  const first = await startNats({ jetstreamDir: dir });
  servers.push(first);
  nc = await connect({ servers: first.url, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
  const events: string[] = [];
  void (async () => {
    for await (const s of nc.status()) events.push(s.type);
  })();
  const delivery = await Delivery.start({
    nc,
    mode: 'durable',
    history: { publishTimeoutMs: 1500 },
    flush: () => nc!.flush(),
    members: () => undefined,
    log: silentLogger,
  });
  const session: DeliveryMember = { id: 'o-session', write: () => true, lost: () => {} };
  const to = { user: 'o-ben' };
  const send = (n: number): Promise<Published> =>
    delivery.publish(session, { from: 'o-ann', to, body: n, key: `o-${n}` } satisfies ChatMessage);

  await send(0);
  // Send 1 is written to the socket of a server that reads nothing (stopped), then dies: it is lost.
  await pauseProcess(first.process);
  const inFlight = [send(1)];
  await turn();
  await turn();
  first.process.kill('SIGKILL');
  await until('the connection noticed', () => events.includes('disconnect'), 5000);
  // The server comes back with the same store; sends 2 and 3 come before send 1 has timed out.
  servers.push(await startNats({ port: first.port, jetstreamDir: dir }));
  await until('reconnected', () => events.includes('reconnect'), 10_000);
  inFlight.push(send(2), send(3));

  const outcomes = await Promise.allSettled(inFlight);
  expect(outcomes[0]!.status).toBe('rejected');
  // The client re-sends everything not acknowledged, in order, with the same keys, each until it
  // is acknowledged (the restarted server's stream may still be loading).
  for (const [i, outcome] of outcomes.entries()) {
    if (outcome.status === 'fulfilled') continue;
    await until(`send ${i + 1} re-sent`, () => send(i + 1).then(() => true, () => false), 15_000);
  }

  const stored = subjects.storedUser(to.user);
  const store = delivery.store!;
  const messages = await store.range('user', stored, 1, await store.lastSeq('user', stored));
  const bodies = messages.map((m) => JSON.parse(decodeChatMessage(m.data)!.frame.toString()).body);
  expect(bodies).toEqual([0, 1, 2, 3]);
});
