/**
 * Durable delivery (issue 12) end to end: two gateway nodes with DELIVERY=durable on one
 * nats-server with JetStream, real WebSockets. Absence is proven with a barrier message: a
 * sentinel sent after the fact by the same node reaches the client after anything that came
 * before it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel, sentinel } from '../harness/sync.ts';
import type { Frame, TestClient } from '../harness/client.ts';

let stack: Stack;
const MAX_PER_TARGET = 8;
beforeAll(async () => {
  stack = await startStack({
    nodes: 2,
    gateway: {
      delivery: 'durable',
      history: { maxPerTarget: MAX_PER_TARGET },
      limits: { sendsPerSecond: 1e6, sendBurst: 1e6 },
    },
  });
});
afterAll(async () => {
  await stack?.stop();
});

const chat = (c: TestClient) => c.messages().filter((m) => !isSentinel(m));
const bodies = (frames: Frame[]) => frames.map((f) => f.body);

/** A session of `user` on `node` whose upgrade URL carries `since`. */
async function resumeSession(node: number, user: string, since: string, rooms?: string[]) {
  const client = stack.client(node, { token: await stack.token(user, rooms ? { rooms } : undefined), query: { since } });
  const welcome = await client.type('welcome');
  return { client, welcome };
}

async function sendAll(from: TestClient, to: Record<string, string>, texts: unknown[], key?: (i: number) => string) {
  const acks: Frame[] = [];
  for (const [i, body] of texts.entries()) {
    const frame: Record<string, unknown> & { id: string } = { type: 'send', id: `s${i}-${Math.random()}`, to, body };
    if (key) frame.key = key(i);
    const ack = await from.request(frame);
    expect(ack.type).toBe('ack');
    acks.push(ack);
  }
  return acks;
}

describe('durable - positions and resume of a user inbox', () => {
  it('durable - every message and its ack carry the same pos, ordered per destination', async () => {
    const ann = (await stack.session(1, 'du-ann')).client;
    const ben = (await stack.session(0, 'du-ben')).client;
    const acks = await sendAll(ben, { user: 'du-ann' }, ['a', 'b']);
    const got = [await ann.next((f) => f.body === 'a'), await ann.next((f) => f.body === 'b')];
    expect(got.map((m) => m.pos)).toEqual(acks.map((a) => a.pos));
    for (const a of acks) expect(typeof a.pos === 'string' && (a.pos as string).length <= 64).toBe(true);
  });

  it('durable - a recipient that comes back on the other node with since gets what it missed, in order, then live, once each', async () => {
    const first = await stack.session(0, 'du-cy');
    const sender = (await stack.session(1, 'du-dan')).client;
    const [seen] = await sendAll(sender, { user: 'du-cy' }, ['m0']);
    await first.client.next((f) => f.body === 'm0');
    first.client.close();
    await first.client.closed;
    // Sent while the recipient has no session anywhere.
    await sendAll(sender, { user: 'du-cy' }, ['m1', 'm2', 'm3']);
    const back = await resumeSession(1, 'du-cy', seen!.pos as string);
    expect(back.welcome.recovered).toBe(true);
    await sendAll(sender, { user: 'du-cy' }, ['m4']);
    await sentinel(sender, back.client, 'du-cy');
    expect(bodies(chat(back.client))).toEqual(['m1', 'm2', 'm3', 'm4']);
    // Right after the welcome, before anything else.
    const welcomeAt = back.client.frames.findIndex((f) => f.type === 'welcome');
    expect(back.client.frames[welcomeAt + 1]).toMatchObject({ type: 'message', body: 'm1' });
  });

  it('durable - since in the auth frame resumes too; without since only live and no recovered field', async () => {
    const sender = (await stack.session(0, 'du-eve')).client;
    const acks = await sendAll(sender, { user: 'du-fay' }, ['f0', 'f1']);
    const viaFrame = stack.client(1);
    await viaFrame.opened;
    viaFrame.send({ type: 'auth', token: await stack.token('du-fay'), since: acks[0]!.pos });
    expect((await viaFrame.type('welcome')).recovered).toBe(true);
    await viaFrame.next((f) => f.body === 'f1');
    const plain = await stack.session(1, 'du-fay');
    expect(plain.welcome).not.toHaveProperty('recovered');
    await sentinel(sender, plain.client, 'du-fay');
    expect(chat(plain.client)).toEqual([]);
  });

  it('durable - a bad, unknown or too old since recovers nothing and says so', async () => {
    const sender = (await stack.session(0, 'du-gus')).client;
    const acks = await sendAll(sender, { user: 'du-hal' }, Array.from({ length: MAX_PER_TARGET + 2 }, (_, i) => i));
    // The first two are beyond retention now (MAX_PER_TARGET per inbox).
    const tooOld = acks[0]!.pos as string;
    const epoch = tooOld.split('-')[0];
    // The oldest retained one still recovers (checked first: the sentinels below fill the inbox).
    const ok = await resumeSession(1, 'du-hal', acks[2]!.pos as string);
    expect(ok.welcome.recovered).toBe(true);
    await ok.client.next((f) => f.body === MAX_PER_TARGET + 1);
    expect(bodies(chat(ok.client))).toEqual(Array.from({ length: MAX_PER_TARGET - 1 }, (_, i) => i + 3));
    for (const since of [tooOld, 'garbage', 'x'.repeat(300), `${epoch}-999999999`, 'AAAAAAAA-3', '']) {
      const s = await resumeSession(1, 'du-hal', since);
      expect(s.welcome.recovered, since).toBe(false);
      await sentinel(sender, s.client, 'du-hal');
      expect(chat(s.client), since).toEqual([]);
    }
  });
});

describe('durable - rooms', () => {
  it('durable - join with since replays the room, then acks recovered, then live', async () => {
    const rooms = ['du-room'];
    const amy = (await stack.session(0, 'du-amy', { rooms })).client;
    await amy.request({ type: 'join', id: 'j', room: 'du-room' });
    const acks = await sendAll(amy, { room: 'du-room' }, ['r0', 'r1', 'r2']);
    const bo = (await stack.session(1, 'du-bo', { rooms })).client;
    const ack = await bo.request({ type: 'join', id: 'j', room: 'du-room', since: acks[0]!.pos });
    expect(ack).toMatchObject({ type: 'ack', recovered: true });
    const ackAt = bo.frames.indexOf(ack);
    expect(bodies(bo.frames.slice(0, ackAt).filter((f) => f.type === 'message'))).toEqual(['r1', 'r2']);
    await sendAll(amy, { room: 'du-room' }, ['r3']);
    await bo.next((f) => f.body === 'r3');
    expect(bodies(bo.messages())).toEqual(['r1', 'r2', 'r3']);
    const bad = await bo.request({ type: 'join', id: 'j2', room: 'du-room2', since: 42 });
    expect(bad).toMatchObject({ type: 'error', code: 'forbidden' });
  });
});

describe('durable - history', () => {
  it('durable - pages back through a room or the inbox, oldest first; refuses ungranted rooms and bad values', async () => {
    const rooms = ['du-hist'];
    const ivy = (await stack.session(0, 'du-ivy', { rooms })).client;
    await ivy.request({ type: 'join', id: 'j', room: 'du-hist' });
    const acks = await sendAll(ivy, { room: 'du-hist' }, ['h0', 'h1', 'h2', 'h3', 'h4']);
    // Granted but not joined: allowed.
    const jo = (await stack.session(1, 'du-jo', { rooms })).client;
    const page = (id: string, extra: Record<string, unknown>) => {
      jo.send({ type: 'history', id, ...extra });
      return jo.next((f) => (f.type === 'history' || f.type === 'error') && f.id === id);
    };
    const last = await page('p1', { room: 'du-hist', limit: 2 });
    expect(bodies(last.messages as Frame[])).toEqual(['h3', 'h4']);
    expect(last.more).toBe(true);
    expect((last.messages as Frame[]).map((m) => m.pos)).toEqual([acks[3]!.pos, acks[4]!.pos]);
    const earlier = await page('p2', { room: 'du-hist', before: acks[3]!.pos, limit: 100 });
    expect(bodies(earlier.messages as Frame[])).toEqual(['h0', 'h1', 'h2']);
    expect(earlier.more).toBe(false);
    expect(bodies((await page('p3', { room: 'du-hist' })).messages as Frame[])).toEqual(['h0', 'h1', 'h2', 'h3', 'h4']);

    await sendAll(ivy, { user: 'du-jo' }, ['to jo']);
    expect(bodies((await page('p4', { user: true })).messages as Frame[])).toEqual(['to jo']);

    expect(await page('e1', { room: 'du-secret' })).toMatchObject({ type: 'error', code: 'forbidden' });
    for (const [id, bad] of [
      ['e2', { room: 'du-hist', limit: 0 }],
      ['e3', { room: 'du-hist', limit: 101 }],
      ['e4', { room: 'du-hist', limit: 'x' }],
      ['e5', { room: 'du-hist', before: 'nope' }],
      ['e6', { room: 'du-hist', before: 'AAAAAAAA-1' }],
      ['e7', {}],
      ['e8', { room: 'du-hist', user: true }],
      ['e9', { user: 'du-ivy' }],
    ] as const) {
      expect(await page(id, bad), id).toMatchObject({ type: 'error', code: 'bad_request' });
    }
  });
});

describe('durable - idempotent send', () => {
  it('durable - the same key from the same user on either node is delivered once and acked the same', async () => {
    const kim = (await stack.session(0, 'du-kim')).client;
    const kim2 = (await stack.session(1, 'du-kim')).client;
    const lea = (await stack.session(1, 'du-lea')).client;
    const [first] = await sendAll(kim, { user: 'du-lea' }, ['once'], () => 'key-1');
    const [again] = await sendAll(kim2, { user: 'du-lea' }, ['once'], () => 'key-1');
    expect({ msgId: again!.msgId, pos: again!.pos }).toEqual({ msgId: first!.msgId, pos: first!.pos });
    // Another user's same key is another message.
    const other = (await stack.session(0, 'du-max')).client;
    const [theirs] = await sendAll(other, { user: 'du-lea' }, ['theirs'], () => 'key-1');
    expect(theirs!.pos).not.toBe(first!.pos);
    await sentinel(kim2, lea, 'du-lea');
    await sentinel(kim, lea, 'du-lea');
    expect(bodies(chat(lea))).toEqual(['once', 'theirs']);
    for (const [id, key] of [['k1', ''], ['k2', 'x'.repeat(65)], ['k3', 7]] as const) {
      expect(await kim.request({ type: 'send', id, to: { user: 'du-lea' }, body: 1, key }), id).toMatchObject({
        type: 'error',
        code: 'bad_request',
      });
    }
  });
});

describe('durable - server-side publish', () => {
  it('durable - gateway.publishChat is the send path without a session: stored, positioned, deduplicated by key', async () => {
    const nia = (await stack.session(1, 'du-nia')).client;
    const first = await stack.gateways[0]!.publishChat({ from: 'du-system', to: { user: 'du-nia' }, body: 'notice', key: 'n1' });
    const again = await stack.gateways[1]!.publishChat({ from: 'du-system', to: { user: 'du-nia' }, body: 'notice', key: 'n1' });
    expect(again).toEqual({ ...first, duplicate: true });
    const got = await nia.next((f) => f.body === 'notice');
    expect(got).toMatchObject({ from: 'du-system', pos: first.pos, msgId: first.msgId });
    const sender = (await stack.session(0, 'du-oto')).client;
    await sentinel(sender, nia, 'du-nia');
    expect(bodies(chat(nia))).toEqual(['notice']);
  });
});
