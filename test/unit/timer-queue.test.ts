/**
 * The node's one timer for its session actors (src/gateway/timer-queue.ts), under fake timers:
 * callbacks run in deadline order (equal deadlines in the order armed), never early, cleared ones
 * never; one that throws does not stop the others; and an XState machine's delayed transitions
 * run on it exactly as on the default clock.
 */
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { createActor, createMachine } from 'xstate';
import { TimerQueue } from '../../src/gateway/timer-queue.ts';
import { ActorShards } from '../../src/gateway/actor-shards.ts';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

test('timer queue - deadline order, never early, cleared never, one Node timer', () => {
  const queue = new TimerQueue();
  const ran: string[] = [];
  const delays = [500, 100, 300, 100, 2000, 0, 250, 400];
  const timers = delays.map((ms, i) => queue.setTimeout(() => ran.push(`${i}@${ms}`), ms));
  queue.clearTimeout(timers[2]!);
  queue.clearTimeout(timers[2]!); // twice: no harm
  queue.clearTimeout(timers[6]!);
  expect(queue.size).toBe(6);
  expect(vi.getTimerCount()).toBe(1);
  vi.advanceTimersByTime(99);
  expect(ran).toEqual(['5@0']);
  vi.advanceTimersByTime(1);
  expect(ran).toEqual(['5@0', '1@100', '3@100']);
  vi.advanceTimersByTime(400);
  expect(ran).toEqual(['5@0', '1@100', '3@100', '7@400', '0@500']);
  // Armed later, due earlier than what waits: runs first.
  queue.setTimeout(() => ran.push('late@10'), 10);
  vi.advanceTimersByTime(10);
  expect(ran.at(-1)).toBe('late@10');
  vi.advanceTimersByTime(1489);
  expect(ran).not.toContain('4@2000');
  vi.advanceTimersByTime(1);
  expect(ran.at(-1)).toBe('4@2000');
  expect(queue.size).toBe(0);
  expect(vi.getTimerCount()).toBe(0);
});

test('timer queue - a callback that throws does not stop the others; one armed while firing waits its turn', () => {
  const queue = new TimerQueue();
  const ran: string[] = [];
  queue.setTimeout(() => {
    ran.push('a');
    queue.setTimeout(() => ran.push('from a'), 0);
    throw new Error('boom');
  }, 50);
  queue.setTimeout(() => ran.push('b'), 50);
  expect(() => vi.advanceTimersByTime(50)).toThrow('boom');
  expect(ran).toEqual(['a', 'b']);
  expect(queue.size).toBe(1);
  vi.advanceTimersByTime(1);
  expect(ran).toEqual(['a', 'b', 'from a']);
});

test('timer queue - an XState machine in a shard with this clock takes its delayed transitions on time', () => {
  const queue = new TimerQueue();
  const shards = new ActorShards(undefined, queue);
  const machine = createMachine({
    initial: 'a',
    states: { a: { after: { 1000: 'b' }, on: { skip: 'c' } }, b: { after: { 500: 'c' } }, c: {} },
  });
  const actor = createActor(machine, { parent: shards.acquire().parent }).start();
  const other = createActor(machine, { parent: shards.acquire().parent }).start();
  other.send({ type: 'skip' });
  // The timer `other` left behind was cancelled with its state.
  expect(queue.size).toBe(1);
  vi.advanceTimersByTime(999);
  expect(actor.getSnapshot().value).toBe('a');
  vi.advanceTimersByTime(1);
  expect(actor.getSnapshot().value).toBe('b');
  vi.advanceTimersByTime(500);
  expect(actor.getSnapshot().value).toBe('c');
  expect(queue.size).toBe(0);
});
