/**
 * Durable delivery for a destination with no message yet (a new user's inbox, a new room): its
 * `welcome` / join `ack` still carries `pos` (the stream's last position), and a resume from it
 * recovers what was sent meanwhile; `recovered: false` exactly when the limits may have taken
 * something of it. Real nats-server with JetStream, two gateway nodes; absence proven with
 * sentinels.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel, sentinel, until } from '../harness/sync.ts';
import type { Frame, TestClient } from '../harness/client.ts';

let stack: Stack;
const MAX_PER_TARGET = 5;
beforeAll(async () => {
  stack = await startStack({
    nodes: 2,
    gateway: { delivery: 'durable', history: { maxPerTarget: MAX_PER_TARGET }, limits: { sendsPerSecond: 1e6, sendBurst: 1e6 } },
  });
});
afterAll(async () => {
  await stack?.stop();
});

const chat = (c: TestClient) => c.messages().filter((m) => !isSentinel(m));
const bodies = (frames: Frame[]) => frames.map((f) => f.body);

async function sendAll(from: TestClient, to: Record<string, string>, texts: unknown[]): Promise<Frame[]> {
  const acks: Frame[] = [];
  for (const body of texts) {
    const ack = await from.request({ type: 'send', id: `s-${Math.random()}`, to, body });
    expect(ack.type).toBe('ack');
    acks.push(ack);
  }
  return acks;
}

/** A first session of `user` (nothing ever sent to it), closed again: its welcome's `pos`. */
async function firstVisit(node: number, user: string): Promise<string> {
  const { client, welcome } = await stack.session(node, user);
  expect(welcome.pos, 'welcome of an empty inbox').toEqual(expect.any(String));
  expect((welcome.pos as string).length).toBeLessThanOrEqual(64);
  client.close();
  await client.closed;
  return welcome.pos as string;
}

async function resume(node: number, user: string, since: string) {
  const client = stack.client(node, { token: await stack.token(user), query: { since } });
  return { client, welcome: await client.type('welcome') };
}

describe('durable - an empty destination has a position', () => {
  it('durable empty - a new user away before its first message gets what was sent meanwhile, recovered', async () => {
    const sender = (await stack.session(0, 'de-sam')).client;
    await sendAll(sender, { user: 'de-other' }, ['elsewhere']);
    const pos = await firstVisit(0, 'de-new');
    await sendAll(sender, { user: 'de-new' }, ['n1', 'n2', 'n3']);
    const back = await resume(1, 'de-new', pos);
    expect(back.welcome.recovered).toBe(true);
    await sentinel(sender, back.client, 'de-new');
    expect(bodies(chat(back.client))).toEqual(['n1', 'n2', 'n3']);
    const welcomeAt = back.client.frames.findIndex((f) => f.type === 'welcome');
    expect(back.client.frames[welcomeAt + 1]).toMatchObject({ type: 'message', body: 'n1' });
  });

  it('durable empty - the position is the stream’s last one; a since whose message its own subject’s limit removed still recovers', async () => {
    const sender = (await stack.session(1, 'de-tom')).client;
    const [last] = await sendAll(sender, { user: 'de-x' }, ['x0']);
    const pos = await firstVisit(1, 'de-una');
    expect(pos).toBe(last!.pos);
    // The message at `pos` (de-x's) leaves by de-x's own limit: nothing of de-una's went.
    await sendAll(sender, { user: 'de-x' }, Array.from({ length: MAX_PER_TARGET }, (_, i) => `x${i + 1}`));
    await sendAll(sender, { user: 'de-una' }, ['u1', 'u2']);
    const back = await resume(0, 'de-una', pos);
    expect(back.welcome.recovered).toBe(true);
    await sentinel(sender, back.client, 'de-una');
    expect(bodies(chat(back.client))).toEqual(['u1', 'u2']);
  });

  it('durable empty - an empty room still recovers after another room’s limit moved the stream’s first sequence past its position (the stream is younger than its max age)', async () => {
    // The first test of this file on the rooms stream: it is empty, so the quiet room's position is `<epoch>-0`.
    const rooms = ['de-quiet', 'de-busy'];
    const ida = (await stack.session(0, 'de-ida', { rooms })).client;
    const joined = await ida.request({ type: 'join', id: 'jq', room: 'de-quiet' });
    expect(joined.pos).toMatch(/-0$/);
    expect(await ida.request({ type: 'leave', id: 'lq', room: 'de-quiet' })).toMatchObject({ type: 'ack' });
    // The busy room's own limit removes its oldest messages: the stream's first sequence is past 1.
    const jose = (await stack.session(1, 'de-jose', { rooms })).client;
    await jose.request({ type: 'join', id: 'jb', room: 'de-busy' });
    await sendAll(jose, { room: 'de-busy' }, Array.from({ length: MAX_PER_TARGET + 2 }, (_, i) => `b${i}`));
    const again = await ida.request({ type: 'join', id: 'jq2', room: 'de-quiet', since: joined.pos });
    expect(again).toMatchObject({ type: 'ack', recovered: true });
  });

  it('durable empty - more than the per-destination limit sent meanwhile: recovered false, nothing replayed', async () => {
    const sender = (await stack.session(0, 'de-vic')).client;
    const pos = await firstVisit(0, 'de-wes');
    await sendAll(sender, { user: 'de-wes' }, Array.from({ length: MAX_PER_TARGET + 1 }, (_, i) => i));
    const back = await resume(1, 'de-wes', pos);
    expect(back.welcome.recovered).toBe(false);
    expect(back.welcome.pos).toEqual(expect.any(String));
    await sentinel(sender, back.client, 'de-wes');
    expect(chat(back.client)).toEqual([]);
  });

  it('durable empty - a room joined while empty, left, and joined again with since replays what was sent meanwhile', async () => {
    const rooms = ['de-room'];
    const amy = (await stack.session(0, 'de-amy', { rooms })).client;
    const bo = (await stack.session(1, 'de-bo', { rooms })).client;
    const first = await bo.request({ type: 'join', id: 'j1', room: 'de-room' });
    expect(first).toMatchObject({ type: 'ack', pos: expect.any(String) });
    await amy.request({ type: 'join', id: 'j', room: 'de-room' });
    expect(first).not.toHaveProperty('recovered');
    expect(await bo.request({ type: 'leave', id: 'l1', room: 'de-room' })).toMatchObject({ type: 'ack' });
    await sendAll(amy, { room: 'de-room' }, ['r1', 'r2', 'r3']);
    const again = await bo.request({ type: 'join', id: 'j2', room: 'de-room', since: first.pos });
    expect(again).toMatchObject({ type: 'ack', recovered: true });
    const ackAt = bo.frames.indexOf(again);
    expect(bodies(bo.frames.slice(0, ackAt).filter((f) => f.type === 'message'))).toEqual(['r1', 'r2', 'r3']);
    await sendAll(amy, { room: 'de-room' }, ['r4']);
    await bo.next((f) => f.body === 'r4');
    expect(bodies(chat(bo))).toEqual(['r1', 'r2', 'r3', 'r4']);
  });

  it('durable empty - history before an empty destination’s position has nothing of it; the destination pages as usual', async () => {
    const rooms = ['de-hist'];
    const cy = (await stack.session(0, 'de-cy', { rooms })).client;
    const joined = await cy.request({ type: 'join', id: 'j', room: 'de-hist' });
    const acks = await sendAll(cy, { room: 'de-hist' }, ['h0', 'h1']);
    const page = async (id: string, target: Record<string, unknown>) => {
      cy.send({ type: 'history', id, ...target });
      return cy.next((f) => (f.type === 'history' || f.type === 'error') && f.id === id);
    };
    expect(await page('p1', { room: 'de-hist', before: joined.pos })).toMatchObject({ type: 'history', messages: [], more: false });
    expect(bodies((await page('p2', { room: 'de-hist', before: acks[1]!.pos })).messages as Frame[])).toEqual(['h0']);
    expect(bodies((await page('p3', { room: 'de-hist' })).messages as Frame[])).toEqual(['h0', 'h1']);
    const inboxPos = await firstVisit(1, 'de-dee');
    expect(await page('p4', { user: true, before: inboxPos })).toMatchObject({ type: 'history', more: false });
    expect(await page('p5', { user: true, before: `${inboxPos.split('-')[0]}-0` })).toMatchObject({ type: 'history', messages: [], more: false });
  });

  it('durable empty - a since taken from another user’s inbox or a room replays only the caller’s own inbox', async () => {
    const rooms = ['de-iso'];
    const eve = (await stack.session(0, 'de-eve', { rooms })).client;
    await eve.request({ type: 'join', id: 'j', room: 'de-iso' });
    const [theirs] = await sendAll(eve, { user: 'de-fay' }, ['for fay']);
    const [room] = await sendAll(eve, { room: 'de-iso' }, ['for the room']);
    const pos = await firstVisit(0, 'de-gil');
    await sendAll(eve, { user: 'de-fay' }, ['for fay later']);
    await sendAll(eve, { room: 'de-iso' }, ['for the room later']);
    await sendAll(eve, { user: 'de-gil' }, ['for gil']);
    // Positions of the same stream: only the own inbox's messages after them.
    for (const since of [theirs!.pos as string, pos]) {
      const back = await resume(1, 'de-gil', since);
      expect(back.welcome.recovered, since).toBe(true);
      await sentinel(eve, back.client, 'de-gil');
      expect(bodies(chat(back.client)), since).toEqual(['for gil']);
      back.client.close();
    }
    // A room's position is of the other stream (another epoch): nothing.
    const back = await resume(1, 'de-gil', room!.pos as string);
    expect(back.welcome.recovered).toBe(false);
    await sentinel(eve, back.client, 'de-gil');
    expect(chat(back.client)).toEqual([]);
  });
});

describe('durable - an empty destination and the age limit', () => {
  it('durable empty - an empty stream gives position 0; a message that aged out meanwhile makes the resume recovered false', async () => {
    const aged = await startStack({ nodes: 1, gateway: { delivery: 'durable', history: { maxAgeS: 1 } } });
    try {
      const sender = (await aged.session(0, 'da-sam')).client;
      const first = await aged.session(0, 'da-new');
      const pos = first.welcome.pos as string;
      expect(pos).toMatch(/^[A-Za-z0-9_-]{8}-0$/);
      first.client.close();
      // Sent and stored while away, then aged out.
      await sendAll(sender, { user: 'da-new' }, ['gone']);
      const probe = (await aged.session(0, 'da-new')).client;
      await until(
        'the message to age out',
        async () => {
          const id = `h-${Math.random()}`;
          probe.send({ type: 'history', id, user: true });
          const page = await probe.next((f) => f.type === 'history' && f.id === id);
          return (page.messages as Frame[]).length === 0;
        },
        10_000,
      );
      probe.close();
      const back = aged.client(0, { token: await aged.token('da-new'), query: { since: pos } });
      expect((await back.type('welcome')).recovered).toBe(false);
    } finally {
      await aged.stop();
    }
  }, 30_000);
});
