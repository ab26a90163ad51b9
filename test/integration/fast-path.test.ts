/**
 * The fast path for accepted sends and the shared actor systems, on a real node
 * (docs/scaling.md, "How a send is decided"): while nobody observes, sends are
 * acked and delivered without the machine's macrostep; once someone observes, a session opened
 * before is observed from then on and its sends go through the machine again (an observed
 * session's record is whole), and after the observer leaves they take the fast path again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import type { Observation } from '../../src/observe/observe.ts';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

it('fast path - sessions of a node share actor systems, not one each', async () => {
  await stack.session(0, 'fp-share-a');
  await stack.session(0, 'fp-share-b');
  const systems = new Set([...stack.gateways[0]!.sessions.values()].map((s) => s.actor.system));
  expect(stack.gateways[0]!.sessions.size).toBeGreaterThanOrEqual(2);
  expect(systems.size).toBe(1);
});

it('fast path - a session observed after it opened goes through the machine while observed, and its sends are acked either way', async () => {
  const { client: a, welcome } = await stack.session(0, 'fp-a');
  const { client: b } = await stack.session(0, 'fp-b');
  const session = String(welcome.session);
  const send = async (id: number) => {
    expect(await a.request({ type: 'send', id, to: { user: 'fp-b' }, body: `m${id}` })).toMatchObject({ type: 'ack', id });
    await b.next((f) => f.type === 'message' && f.body === `m${id}`);
  };

  await send(1);
  const seen: Observation[] = [];
  const stop = stack.gateways[0]!.observers.listen({ filter: { session }, receive: (o) => seen.push(o) });
  await send(2);
  stop();
  // The observed send went through the machine: its event and its effect were observed.
  expect(seen.filter((o) => o.kind === 'event').map((o) => o.event?.type)).toEqual(['frame.send']);
  expect(seen.filter((o) => o.kind === 'action').map((o) => o.action?.type)).toEqual(['publishAndAck']);
  expect(seen.every((o) => o.session === session && o.user === 'fp-a')).toBe(true);

  await send(3);
  expect(seen).toHaveLength(3);
});
