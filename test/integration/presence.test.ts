/**
 * Presence, room capabilities and signals across two gateway nodes on one NATS server, with real
 * sockets. Absence is proved with a barrier: a later event from the same node (NATS keeps one
 * connection's order) arrives only after anything the earlier step could have caused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import type { Frame, TestClient } from '../harness/client.ts';

let stack: Stack;
let run = 0;

beforeAll(async () => {
  stack = await startStack({ nodes: 2, gateway: { presenceHeartbeatMs: 500, presenceNodeTimeoutMs: 3000 } });
});
afterAll(async () => {
  await stack?.stop();
});

const events = (c: TestClient, room: string) =>
  c.frames.filter((f) => (f.type === 'joined' || f.type === 'left') && f.room === room).map((f) => `${f.type} ${f.user}`);
const isEvent = (type: string, room: string, user: string) => (f: Frame) => f.type === type && f.room === room && f.user === user;

async function joined(node: number, user: string, room: string, rooms: unknown = [room]) {
  const { client } = await stack.session(node, user, { claims: { rooms } });
  expect(await client.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
  return client;
}

describe('presence', () => {
  it('presence - joined and left across nodes, once per user, never for a second or third session', async () => {
    run += 1;
    const room = `lobby.*>#${run}`;
    const watcher = await joined(0, `watch${run}`, room);
    const alice1 = await joined(1, `alice${run}`, room);
    await watcher.next(isEvent('joined', room, `alice${run}`));
    // Alice's second session on the same node and her third on the other node: no event.
    const alice2 = await joined(1, `alice${run}`, room);
    const alice3 = await joined(0, `alice${run}`, room);
    // Barrier: a later join on each node reaches the watcher after anything alice2/alice3 caused.
    await joined(1, `bob${run}`, room);
    await watcher.next(isEvent('joined', room, `bob${run}`));
    await joined(0, `carol${run}`, room);
    await watcher.next(isEvent('joined', room, `carol${run}`));
    // The watcher's own join came first: a joining session is told of itself too, once acked.
    expect(events(watcher, room)).toEqual([`joined watch${run}`, `joined alice${run}`, `joined bob${run}`, `joined carol${run}`]);

    watcher.send({ type: 'presence', id: 'p1', room });
    const presence = await watcher.next((f) => f.type === 'presence' && f.id === 'p1');
    expect(presence).toEqual({
      type: 'presence',
      id: 'p1',
      room,
      count: 4,
      users: [`alice${run}`, `bob${run}`, `carol${run}`, `watch${run}`].sort(),
    });

    // Alice leaves one session after another: only the last one is a `left`.
    expect(await alice1.request({ type: 'leave', id: 'l', room })).toMatchObject({ type: 'ack' });
    alice3.close();
    await alice3.closed;
    expect(await alice2.request({ type: 'leave', id: 'l', room })).toMatchObject({ type: 'ack' });
    await watcher.next(isEvent('left', room, `alice${run}`));
    expect(events(watcher, room).filter((e) => e.startsWith('left'))).toEqual([`left alice${run}`]);
  });

  it('presence - a session that may read the room but has not joined it asks every node', async () => {
    run += 1;
    const room = `quiet#${run}`;
    await joined(1, `dora${run}`, room);
    const { client } = await stack.session(0, `eve${run}`, { claims: { rooms: { [room]: 'r' } } });
    client.send({ type: 'presence', id: 'q', room });
    expect(await client.next((f) => f.id === 'q')).toMatchObject({ type: 'presence', count: 1, users: [`dora${run}`] });
    client.send({ type: 'presence', id: 'x', room: `other#${run}` });
    expect(await client.next((f) => f.id === 'x')).toMatchObject({ type: 'error', code: 'forbidden' });
  });

  it('presence - a node that stops says bye: its users are left at once', async () => {
    run += 1;
    const room = `bye#${run}`;
    const extra = await stack.addGateway();
    const watcher = await joined(0, `w${run}`, room);
    const { client } = await stack.session(extra, `gone${run}`, { claims: { rooms: [room] } });
    expect(await client.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
    await watcher.next(isEvent('joined', room, `gone${run}`));
    await stack.gateways[extra]!.close();
    await watcher.next(isEvent('left', room, `gone${run}`));
  });
});

describe('capabilities', () => {
  it('capabilities - r: join, receive and presence, but send is forbidden; a refresh applies new ones at once', async () => {
    run += 1;
    const news = `news#${run}`;
    const writer = await joined(1, `editor${run}`, news);
    const reader = await joined(0, `reader${run}`, news, { [news]: 'r' });
    expect(await reader.request({ type: 'send', id: 's1', to: { room: news }, body: 'hi' })).toMatchObject({
      type: 'error',
      code: 'forbidden',
    });
    expect(await reader.request({ type: 'signal', id: 'g1', to: { room: news }, body: 'typing' })).toMatchObject({
      type: 'error',
      code: 'forbidden',
    });
    expect(await writer.request({ type: 'send', id: 'w1', to: { room: news }, body: 'headline' })).toMatchObject({ type: 'ack' });
    await reader.next((f) => f.type === 'message' && f.body === 'headline');

    // rw through the "*" key, then back to r: each refresh counts from its ack on.
    const rw = await stack.token(`reader${run}`, { claims: { rooms: { '*': 'rw' } } });
    expect(await reader.request({ type: 'refresh', id: 'r1', token: rw })).toMatchObject({ type: 'ack' });
    expect(await reader.request({ type: 'send', id: 's2', to: { room: news }, body: 'reply' })).toMatchObject({ type: 'ack' });
    await writer.next((f) => f.type === 'message' && f.body === 'reply');
    const r = await stack.token(`reader${run}`, { claims: { rooms: { [news]: 'r', '*': 'rw' } } });
    expect(await reader.request({ type: 'refresh', id: 'r2', token: r })).toMatchObject({ type: 'ack' });
    expect(await reader.request({ type: 'send', id: 's3', to: { room: news }, body: 'no' })).toMatchObject({
      type: 'error',
      code: 'forbidden',
    });
  });

  it('capabilities - a rooms claim that is neither a list, "*" nor an object of r/rw is an invalid token', async () => {
    for (const rooms of [{ a: 'w' }, { a: true }, { '': 'r' }, 7, ['ok', 3]]) {
      const c = stack.client(0, { token: await stack.token(`bad${run}`, { claims: { rooms } }) });
      expect(await c.closedWith()).toBe(4001);
    }
  });
});

describe('signals', () => {
  it('signals - reach who a message would reach, never stored, ack only with an id', async () => {
    run += 1;
    const room = `typing#${run}`;
    const a = await joined(0, `sa${run}`, room);
    const b = await joined(1, `sb${run}`, room);
    const bOther = (await stack.session(0, `sb${run}`)).client;
    expect(await a.request({ type: 'signal', id: 1, to: { room }, body: { typing: true } })).toEqual({ type: 'ack', id: 1 });
    expect(await b.next((f) => f.type === 'signal')).toEqual({
      type: 'signal',
      from: `sa${run}`,
      to: { room },
      body: { typing: true },
    });
    // To a user: every session of that user; without an id no ack comes (barrier: the ping after it).
    a.send({ type: 'signal', to: { user: `sb${run}` }, body: 'poke' });
    await bOther.next((f) => f.type === 'signal' && f.body === 'poke');
    await b.next((f) => f.type === 'signal' && f.body === 'poke');
    a.send({ type: 'ping', id: 'after' });
    await a.next((f) => f.type === 'pong');
    expect(a.frames.filter((f) => f.type === 'ack' && f.id === undefined)).toEqual([]);
    // The sender never gets its own room signal; bOther is not in the room.
    expect(a.frames.filter((f) => f.type === 'signal')).toEqual([]);
    expect(bOther.frames.filter((f) => f.type === 'signal').map((f) => f.body)).toEqual(['poke']);

    const big = 'x'.repeat(1025);
    expect(await a.request({ type: 'signal', id: 2, to: { room }, body: big })).toMatchObject({ type: 'error', code: 'bad_request' });
  });

  it('signals - their own rate: over SIGNALS_PER_SECOND and the burst, error rate_limited', async () => {
    run += 1;
    const { client } = await stack.session(0, `burst${run}`);
    for (let i = 0; i < 25; i++) client.send({ type: 'signal', id: i, to: { user: `burst${run}` }, body: i });
    const answers: Frame[] = [];
    for (let i = 0; i < 25; i++) answers.push(await client.next((f) => (f.type === 'ack' || f.type === 'error') && f.id === i));
    expect(answers.slice(0, 20).every((f) => f.type === 'ack')).toBe(true);
    expect(answers.filter((f) => f.type === 'error')[0]).toMatchObject({ code: 'rate_limited', message: 'too many signals' });
    // Sends have their own bucket: still allowed.
    expect(await client.request({ type: 'send', id: 's', to: { user: `burst${run}` }, body: 'x' })).toMatchObject({ type: 'ack' });
  });
});
