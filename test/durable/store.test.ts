import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection, type Msg } from '@nats-io/transport-node';
import { startNats, type NatsServer } from '../harness/nats.ts';
import { DurableStore } from '../../src/durable/store.ts';
import { subjects } from '../../src/subjects.ts';
import { decodePosition } from '../../src/durable/positions.ts';
import { silentLogger } from '../../src/log.ts';

let server: NatsServer;
let nc: NatsConnection;
let store: DurableStore;
beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  store = await DurableStore.open(nc, { maxPerTarget: 5, dedupeWindowS: 60 }, silentLogger);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

/** Resolves with the next message on `subject`. */
function nextOn(subject: string): Promise<Msg> {
  return new Promise((resolve) => {
    nc.subscribe(subject, { max: 1, callback: (_err, msg) => resolve(msg) });
  });
}

describe('durable store - streams on one server', () => {
  it('durable store - a stored message is republished to the live subject with its sequence and the previous one', async () => {
    const live = nextOn(subjects.user('s-ann'));
    await nc.flush();
    const first = await store.publish(subjects.storedUser('s-ann'), 'one');
    const msg = await live;
    expect(msg.string()).toBe('one');
    expect(Number(msg.headers?.get('Nats-Sequence'))).toBe(first.seq);
    const again = nextOn(subjects.user('s-ann'));
    await nc.flush();
    const second = await store.publish(subjects.storedUser('s-ann'), 'two');
    expect(Number((await again).headers?.get('Nats-Last-Sequence'))).toBe(first.seq);
    expect(await store.lastSeq('user', subjects.storedUser('s-ann'))).toBe(second.seq);
  });

  it('durable store - a repeated msgId is a duplicate with the original sequence, and stores nothing', async () => {
    const a = await store.publish(subjects.storedRoom('s-room'), 'x', 'key-1');
    const b = await store.publish(subjects.storedRoom('s-room'), 'y', 'key-1');
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
    expect(await store.lastSeq('room', subjects.storedRoom('s-room'))).toBe(a.seq);
  });

  it('durable store - range walks one destination only, history pages backwards, retention keeps the newest', async () => {
    const subject = subjects.storedUser('s-ben');
    const seqs: number[] = [];
    for (let i = 0; i < 7; i++) {
      seqs.push((await store.publish(subject, `b${i}`)).seq);
      await store.publish(subjects.storedUser('s-other'), `o${i}`);
    }
    // maxPerTarget 5: the two oldest are gone.
    const all = await store.range('user', subject, 1, seqs.at(-1)!);
    expect(all.map((m) => m.string())).toEqual(['b2', 'b3', 'b4', 'b5', 'b6']);
    const page = await store.history('user', subject, seqs[5], 2);
    expect(page.messages.map((m) => m.string())).toEqual(['b3', 'b4']);
    expect(page.more).toBe(true);
    const newest = await store.history('user', subject, undefined, 10);
    expect(newest.messages.length).toBe(5);
    expect(newest.more).toBe(false);
    expect(await store.lastSeq('user', subjects.storedUser('s-nobody'))).toBe(0);
  });

  it('durable store - positions carry the stream epoch; another epoch or a bad value is no position', () => {
    const pos = store.position('user', 42);
    expect(pos.length).toBeLessThanOrEqual(64);
    expect(store.sequenceOf('user', pos)).toBe(42);
    expect(store.sequenceOf('room', pos)).toBeUndefined();
    for (const bad of ['', '42', 'x'.repeat(65), `${pos}0`.repeat(4), 42, null, {}, 'AAAAAAAA-0', 'AAAAAAAA-99999999999999999']) {
      expect(store.sequenceOf('user', bad)).toBeUndefined();
    }
    expect(decodePosition(pos)).toEqual({ epoch: store.epochs.user, seq: 42 });
    // 0: before the stream's first message (an empty destination of an empty stream).
    const epoch = store.epochs.user;
    expect(store.sequenceOf('user', `${epoch}-0`)).toBe(0);
    for (const bad of [`${epoch}-00`, `${epoch}-01`, `${epoch}--1`, `${epoch}-`]) expect(store.sequenceOf('user', bad), bad).toBeUndefined();
  });

  it('durable store - the barrier of an empty destination is the stream’s last sequence', async () => {
    const last = await store.publish(subjects.storedUser('s-elsewhere'), 'x');
    expect(await store.barrier('user', subjects.storedUser('s-empty'))).toEqual({ top: 0, pos: last.seq });
    const own = await store.publish(subjects.storedUser('s-empty'), 'y');
    expect(await store.barrier('user', subjects.storedUser('s-empty'))).toEqual({ top: own.seq, pos: own.seq });
    const state = await store.state('user', subjects.storedUser('s-empty'));
    expect(state).toMatchObject({ last: own.seq, count: 1 });
    expect(state.first).toBeLessThanOrEqual(last.seq);
  });

  it('durable store - opening again keeps the streams and their epochs', async () => {
    const again = await DurableStore.open(nc, { maxPerTarget: 5, dedupeWindowS: 60 }, silentLogger);
    expect(again.epochs).toEqual(store.epochs);
    const other = await DurableStore.open(nc, { maxPerTarget: 9 }, silentLogger);
    expect(other.epochs).toEqual(store.epochs);
  });
});
