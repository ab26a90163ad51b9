import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel, sentinel } from '../harness/sync.ts';
import type { TestClient } from '../harness/client.ts';

// Two gateway nodes on two different servers of a 3-node NATS cluster.
let stack: Stack;
let barrier: TestClient[];
beforeAll(async () => {
  // The barrier sessions send a sentinel for every check: no send rate limit here.
  stack = await startStack({ nodes: 2, cluster: true, gateway: { limits: { sendsPerSecond: 1e6, sendBurst: 1e6 } } });
  barrier = [(await stack.session(0, 'd-barrier-0')).client, (await stack.session(1, 'd-barrier-1')).client];
});
afterAll(async () => {
  await stack?.stop();
});

/** Makes what each node subscribed so far known to the other node's NATS server. */
async function syncNodes() {
  await sentinel(barrier[0]!, barrier[1]!, 'd-barrier-1');
  await sentinel(barrier[1]!, barrier[0]!, 'd-barrier-0');
}

/** After this, everything node `from` published has reached `client`. */
const drained = (from: number, client: TestClient, user: string) => sentinel(barrier[from]!, client, user);
const chat = (c: TestClient) => c.messages().filter((m) => !isSentinel(m));

describe('delivery - across two nodes', () => {
  it('delivery - to a user reaches every session of that user on every node, and nobody else', async () => {
    const u0 = (await stack.session(0, 'd-ann')).client;
    const u1 = (await stack.session(1, 'd-ann')).client;
    const other = (await stack.session(1, 'd-ben')).client;
    const sender = (await stack.session(1, 'd-cy')).client;
    await syncNodes();
    await sender.request({ type: 'send', id: 1, to: { user: 'd-ann' }, body: 'to ann' });
    for (const c of [u0, u1]) expect(await c.type('message')).toMatchObject({ from: 'd-cy', body: 'to ann' });
    await drained(1, other, 'd-ben');
    await drained(1, sender, 'd-cy');
    expect(chat(other)).toEqual([]);
    expect(chat(sender)).toEqual([]);
  });

  it('delivery - to a room reaches every member on any node except the sending session', async () => {
    const rooms = ['d-room'];
    const a0 = (await stack.session(0, 'd-amy', { rooms })).client;
    const a1 = (await stack.session(1, 'd-amy', { rooms })).client;
    const b0 = (await stack.session(0, 'd-bo', { rooms })).client;
    const outsider = (await stack.session(0, 'd-out', { rooms })).client;
    for (const [i, c] of [a0, a1, b0].entries()) await c.request({ type: 'join', id: i, room: 'd-room' });
    await syncNodes();
    await a1.request({ type: 'send', id: 'm', to: { room: 'd-room' }, body: 'hello room' });
    for (const c of [a0, b0]) {
      expect(await c.type('message')).toMatchObject({ from: 'd-amy', to: { room: 'd-room' }, body: 'hello room' });
    }
    await drained(1, a1, 'd-amy');
    await drained(0, outsider, 'd-out');
    expect(chat(a1)).toEqual([]);
    expect(chat(outsider)).toEqual([]);
  });

  it('delivery - a node holds one subscription per user, shared by its local sessions, released by the last', async () => {
    const gateway = stack.gateways[0]!;
    const before = gateway.interest.size;
    const s1 = (await stack.session(0, 'd-shared')).client;
    const s2 = (await stack.session(0, 'd-shared')).client;
    expect(gateway.interest.size).toBe(before + 1);
    s1.close();
    s2.close();
    await Promise.all([s1.closed, s2.closed]);
    const deadline = Date.now() + 5000;
    while (gateway.interest.size !== before && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    expect(gateway.interest.size).toBe(before);
  });
});
