import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel, sentinel } from '../harness/sync.ts';
import { subjects } from '../../src/subjects.ts';

let stack: Stack;
beforeAll(async () => {
  // No clock-skew leeway: the session closes at exp itself.
  stack = await startStack({ gateway: { clockToleranceS: 0, limits: { expiryWarningMs: 1000 } } });
});
afterAll(async () => {
  await stack?.stop();
});

describe('frames - requests and replies', () => {
  it('frames - ping is answered with pong, with and without id', async () => {
    const { client } = await stack.session(0, 'pinger');
    client.send({ type: 'ping' });
    expect(await client.type('pong')).toEqual({ type: 'pong' });
    client.send({ type: 'ping', id: 7 });
    expect(await client.next((f) => f.type === 'pong' && f.id === 7)).toEqual({ type: 'pong', id: 7 });
  });

  it('frames - send to a user is acked with a msgId and delivered with the verified sender as from', async () => {
    const { client: alice } = await stack.session(0, 'f-alice');
    const { client: bob } = await stack.session(0, 'f-bob');
    const ack = await alice.request({ type: 'send', id: 's1', to: { user: 'f-bob' }, body: { text: 'hi' }, from: 'f-mallory' });
    expect(ack).toMatchObject({ type: 'ack', id: 's1' });
    expect(typeof ack.msgId).toBe('string');
    const message = await bob.type('message');
    expect(message).toMatchObject({ msgId: ack.msgId, from: 'f-alice', to: { user: 'f-bob' }, body: { text: 'hi' } });
    expect(typeof message.ts).toBe('number');
  });

  it('frames - join needs the room in the token, "*" grants every room', async () => {
    const { client } = await stack.session(0, 'f-joiner', { rooms: ['lobby'] });
    expect(await client.request({ type: 'join', id: 1, room: 'lobby' })).toEqual({ type: 'ack', id: 1, pos: expect.any(String) });
    expect(await client.request({ type: 'join', id: 2, room: 'vault' })).toMatchObject({ type: 'error', id: 2, code: 'forbidden' });
    const { client: admin } = await stack.session(0, 'f-admin', { rooms: '*' });
    expect(await admin.request({ type: 'join', id: 3, room: 'vault' })).toEqual({ type: 'ack', id: 3, pos: expect.any(String) });
  });

  it('frames - sending to a room needs joining it; a member who left receives nothing more', async () => {
    const { client: a } = await stack.session(0, 'f-room-a', { rooms: ['r1'] });
    const { client: b } = await stack.session(0, 'f-room-b', { rooms: ['r1'] });
    expect(await a.request({ type: 'send', id: 'x', to: { room: 'r1' }, body: 1 })).toMatchObject({ code: 'forbidden' });
    await a.request({ type: 'join', id: 'ja', room: 'r1' });
    await b.request({ type: 'join', id: 'jb', room: 'r1' });
    await a.request({ type: 'send', id: 'm1', to: { room: 'r1' }, body: 'first' });
    expect(await b.type('message')).toMatchObject({ from: 'f-room-a', to: { room: 'r1' }, body: 'first' });
    expect(await b.request({ type: 'leave', id: 'lb', room: 'r1' })).toEqual({ type: 'ack', id: 'lb' });
    await a.request({ type: 'send', id: 'm2', to: { room: 'r1' }, body: 'second' });
    await sentinel(a, b, 'f-room-b');
    expect(b.messages().map((m) => m.body)).toEqual(['first', expect.objectContaining({ sentinel: expect.any(String) })]);
    // The sender's own socket gets a barrier too before it is checked for room messages.
    await sentinel(b, a, 'f-room-a');
    expect(a.messages().filter((m) => !isSentinel(m))).toEqual([]);
  });

  it('frames - the node unsubscribes from a room when its last local member leaves', async () => {
    const { client } = await stack.session(0, 'f-sub', { rooms: ['lonely'] });
    await client.request({ type: 'join', id: 1, room: 'lonely' });
    expect(stack.gateways[0]!.interest.has(subjects.room('lonely'))).toBe(true);
    await client.request({ type: 'leave', id: 2, room: 'lonely' });
    expect(stack.gateways[0]!.interest.has(subjects.room('lonely'))).toBe(false);
  });

  it('frames - refresh is acked with the new exp; a token for another sub is forbidden; a bad one unauthorized', async () => {
    const { client, welcome } = await stack.session(0, 'f-refresh', { ttl: 600 });
    const ack = await client.request({ type: 'refresh', id: 'r1', token: await stack.token('f-refresh', { ttl: 7200 }) });
    expect(ack).toMatchObject({ type: 'ack', id: 'r1' });
    expect(ack.exp as number).toBeGreaterThan(welcome.exp as number);
    expect(await client.request({ type: 'refresh', id: 'r2', token: await stack.token('someone-else') })).toMatchObject({
      type: 'error',
      id: 'r2',
      code: 'forbidden',
    });
    expect(await client.request({ type: 'refresh', id: 'r3', token: 'nope' })).toMatchObject({ code: 'unauthorized' });
  });

  it('frames - expiring comes before the close, with the token\'s exp, and the session closes with 4002', async () => {
    const { client, welcome } = await stack.session(0, 'f-expiring', { ttl: 2 });
    const expiring = await client.type('expiring', 5000);
    expect(expiring.exp).toBe(welcome.exp);
    expect(client.closeCode).toBeUndefined();
    expect(await client.closedWith(5000)).toBe(4002);
  });
});

describe('frames - bad input', () => {
  it('frames - malformed frames get error bad_request, with the id when there is one', async () => {
    const { client } = await stack.session(0, 'f-bad');
    client.send('{not json');
    expect(await client.type('error')).toMatchObject({ code: 'bad_request' });
    expect(await client.request({ type: 'teleport', id: 'u1' })).toMatchObject({ code: 'bad_request', id: 'u1' });
    expect(await client.request({ type: 'send', id: 'u2', to: { user: 'x', room: 'y' }, body: 1 })).toMatchObject({ code: 'bad_request' });
    expect(await client.request({ type: 'send', id: 'u3', to: { user: '' }, body: 1 })).toMatchObject({ code: 'bad_request' });
    expect(await client.request({ type: 'join', id: 'u4', room: '\ud800' })).toMatchObject({ code: 'bad_request' });
    expect(await client.request({ type: 'send', id: 'u5', to: { user: 'x' } })).toMatchObject({ code: 'bad_request' });
    expect(client.closeCode).toBeUndefined();
  });

  it('frames - repeated malformed frames close with 1008', async () => {
    const { client } = await stack.session(0, 'f-abuser');
    for (let i = 0; i < 20; i++) client.send('[]');
    expect(await client.closedWith()).toBe(1008);
  });

  it('frames - a binary frame closes with 1003', async () => {
    const { client } = await stack.session(0, 'f-binary');
    client.ws.send(Buffer.from([1, 2, 3]));
    expect(await client.closedWith()).toBe(1003);
  });

  it('frames - a frame over MAX_MESSAGE_BYTES closes with 1009', async () => {
    const { client } = await stack.session(0, 'f-large');
    client.send({ type: 'send', id: 1, to: { user: 'x' }, body: 'x'.repeat(70_000) });
    expect(await client.closedWith()).toBe(1009);
  });

  it('frames - bad input on one session never disturbs another', async () => {
    const { client: victim } = await stack.session(0, 'f-victim');
    const { client: noisy } = await stack.session(0, 'f-noisy');
    noisy.ws.send(Buffer.from([0]));
    await noisy.closedWith();
    expect(await victim.request({ type: 'send', id: 'ok', to: { user: 'f-victim' }, body: 'still fine' })).toMatchObject({ type: 'ack' });
    expect(await victim.type('message')).toMatchObject({ body: 'still fine' });
  });
});

describe('frames - length limits', () => {
  it('frames - a frame id of 128 characters is echoed, 129 is bad_request; a room id of 256 units is taken, 257 is bad_request', async () => {
    const { client } = await stack.session(0, 'f-lengths', { rooms: '*' });
    const id128 = 'i'.repeat(128);
    client.send({ type: 'ping', id: id128 });
    expect(await client.type('pong')).toEqual({ type: 'pong', id: id128 });
    client.send({ type: 'ping', id: 'i'.repeat(129) });
    expect(await client.next((f) => f.type === 'error')).toMatchObject({ code: 'bad_request' });
    const room256 = `😀${'r'.repeat(254)}`;
    expect(await client.request({ type: 'join', id: 'j256', room: room256 })).toEqual({ type: 'ack', id: 'j256', pos: expect.any(String) });
    expect(await client.request({ type: 'join', id: 'j257', room: `${room256}r` })).toMatchObject({ type: 'error', id: 'j257', code: 'bad_request' });
    expect(client.closeCode).toBeUndefined();
  });
});
