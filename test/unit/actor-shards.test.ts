/**
 * The shared actor systems of a node's connection actors (src/gateway/actor-shards.ts): sessions
 * fill a shard up to SHARD_SIZE, an emptied shard is dropped, and inspection reaches every shard
 * only while it is set.
 */
import { expect, test } from 'vitest';
import { createActor, createMachine, type InspectionEvent } from 'xstate';
import { ActorShards, SHARD_SIZE, type ActorEnded } from '../../src/gateway/actor-shards.ts';

const pinger = createMachine({ initial: 'idle', states: { idle: { on: { ping: 'idle' } } } });

test('actor shards - sessions share a system up to SHARD_SIZE; an emptied shard is dropped', () => {
  const shards = new ActorShards();
  const first = Array.from({ length: SHARD_SIZE }, () => shards.acquire());
  expect(new Set(first).size).toBe(1);
  expect(shards.size).toBe(1);
  const next = shards.acquire();
  expect(next).not.toBe(first[0]);
  expect(shards.size).toBe(2);
  // Two actors of one shard are in one system, not each in its own.
  const a = createActor(pinger, { parent: first[0]!.parent }).start();
  const b = createActor(pinger, { parent: first[1]!.parent }).start();
  expect(a.system).toBe(b.system);
  for (const shard of first) shards.release(shard);
  expect(shards.size).toBe(1);
  // The open shard stays, even empty.
  shards.release(next);
  expect(shards.size).toBe(1);
});

test('actor shards - inspection reaches the shards, existing and new, only while it is set', () => {
  const shards = new ActorShards();
  const heard: InspectionEvent[] = [];
  const old = createActor(pinger, { parent: shards.acquire().parent }).start();
  old.send({ type: 'ping' });
  expect(heard).toEqual([]);

  shards.setInspection((ev) => heard.push(ev));
  old.send({ type: 'ping' });
  expect(heard.some((ev) => ev.type === '@xstate.event' && ev.actorRef === old && ev.event.type === 'ping')).toBe(true);
  for (let i = 0; i < SHARD_SIZE; i++) shards.acquire();
  const fresh = createActor(pinger, { parent: shards.acquire().parent }).start();
  expect(fresh.system).not.toBe(old.system);
  fresh.send({ type: 'ping' });
  expect(heard.some((ev) => ev.type === '@xstate.event' && ev.actorRef === fresh)).toBe(true);

  shards.setInspection(undefined);
  heard.length = 0;
  old.send({ type: 'ping' });
  fresh.send({ type: 'ping' });
  expect(heard).toEqual([]);
});

test('actor shards - the shard hears each of its actors end, done or failed, with the actor id; nothing else', () => {
  const ended: ActorEnded[] = [];
  const shards = new ActorShards((e) => ended.push(e));
  const finite = createMachine({ initial: 'on', states: { on: { on: { stop: 'off', ping: 'on' } }, off: { type: 'final' } } });
  const failing = createMachine({
    initial: 'on',
    states: { on: { on: { boom: { actions: () => { throw new Error('boom'); } } } } },
  });
  const done = createActor(finite, { id: 'session-a', parent: shards.acquire().parent }).start();
  const broken = createActor(failing, { id: 'session-b', parent: shards.acquire().parent }).start();
  done.send({ type: 'ping' });
  expect(ended).toEqual([]);
  done.send({ type: 'stop' });
  expect(ended).toEqual([{ actorId: 'session-a', kind: 'done' }]);
  broken.send({ type: 'boom' });
  expect(ended).toHaveLength(2);
  expect(ended[1]).toMatchObject({ actorId: 'session-b', kind: 'error' });
  expect((ended[1] as { error: Error }).error.message).toBe('boom');
});
