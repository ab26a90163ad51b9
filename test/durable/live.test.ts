import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection, type Msg } from '@nats-io/transport-node';
import { startNats, type NatsServer } from '../harness/nats.ts';
import { DurableStore } from '../../src/durable/store.ts';
import { LiveSequencer } from '../../src/durable/live.ts';
import { Hold, resumeFrom, withPosition } from '../../src/durable/resume.ts';
import { SendOrder, createPublisher } from '../../src/durable/publish.ts';
import { decodeChatMessage } from '../../src/gateway/codec.ts';
import { subjects } from '../../src/subjects.ts';
import { silentLogger } from '../../src/log.ts';

let server: NatsServer;
let nc: NatsConnection;
let store: DurableStore;
beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  store = await DurableStore.open(nc, { maxPerTarget: 50 }, silentLogger);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const publisher = () => createPublisher({ nc, store, flush: () => nc.flush() });
const bodies = (frames: Uint8Array[]) =>
  frames.map((f) => JSON.parse(Buffer.from(f).toString()).body);

/** A sequencer fed from the live subject of `user`, with a filter that can drop what it hears. */
async function listen(user: string, drop: (n: number) => boolean, from: DurableStore = store) {
  const emitted: Array<{ seq: number; body: unknown }> = [];
  const lost: string[] = [];
  let waiting: { n: number; resolve: () => void } | undefined;
  const sequencer = new LiveSequencer(
    from,
    (_subject, seq, data) => {
      emitted.push({ seq, body: JSON.parse(decodeChatMessage(data)!.frame.toString()).body });
      if (waiting && emitted.length >= waiting.n) waiting.resolve();
    },
    (subject) => lost.push(subject),
    silentLogger,
  );
  let heard = 0;
  const subject = subjects.user(user);
  nc.subscribe(subject, {
    callback: (_err, msg: Msg) => {
      if (!drop(heard++)) sequencer.accept(subject, msg);
    },
  });
  await nc.flush();
  const until = (n: number) =>
    new Promise<void>((resolve, reject) => {
      if (emitted.length >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`only ${emitted.length} of ${n}`)), 5000);
      waiting = { n, resolve: () => (clearTimeout(timer), resolve()) };
    });
  return { sequencer, emitted, lost, until };
}

describe('durable live path - gaps are filled, never skipped', () => {
  it('durable live path - a node that misses live messages reads them from the stream, in order, once', async () => {
    // Messages 2 and 3 (0-based 1, 2) never reach this node.
    const { emitted, lost, until } = await listen('l-ann', (n) => n === 1 || n === 2);
    const p = publisher();
    for (let i = 0; i < 5; i++) await p.publishChat({ from: 'l-x', to: { user: 'l-ann' }, body: i });
    await until(5);
    expect(emitted.map((e) => e.body)).toEqual([0, 1, 2, 3, 4]);
    expect(emitted.map((e) => e.seq)).toEqual([...emitted.map((e) => e.seq)].sort((a, b) => a - b));
    expect(lost).toEqual([]);
  });

  it('durable live path - after a reconnect, resync catches up a quiet destination', async () => {
    // Everything after the first message is missed, and nothing more comes live.
    const { sequencer, emitted, until } = await listen('l-ben', (n) => n > 0);
    const p = publisher();
    for (let i = 0; i < 3; i++) await p.publishChat({ from: 'l-x', to: { user: 'l-ben' }, body: i });
    await until(1);
    await sequencer.resync();
    await until(3);
    expect(emitted.map((e) => e.body)).toEqual([0, 1, 2]);
  });
});

describe('durable resume - from a position', () => {
  it('durable live path - a stream read that fails for a moment (a leader election) is asked again, not given up', async () => {
    // The real store, whose first two reads fail as while the stream has no leader.
    let failures = 2;
    const electing = new Proxy(store, {
      get(target, prop) {
        if (prop === 'lastSeq' || prop === 'range') {
          return (...args: unknown[]) =>
            failures-- > 0
              ? Promise.reject(new Error('JetStream: no leader'))
              : (target[prop] as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const { sequencer, emitted, lost, until } = await listen('l-eve', (n) => n > 0, electing);
    const p = publisher();
    for (let i = 0; i < 3; i++) await p.publishChat({ from: 'l-x', to: { user: 'l-eve' }, body: i });
    await until(1);
    await sequencer.resync();
    await until(3);
    expect(emitted.map((e) => e.body)).toEqual([0, 1, 2]);
    expect(lost).toEqual([]);
    expect(failures).toBeLessThan(0);
  });

  it('durable resume - replays after since, and the held live messages after the barrier, with no repeat', async () => {
    const p = publisher();
    const acks = [];
    for (let i = 0; i < 4; i++) acks.push(await p.publishChat({ from: 'r-x', to: { room: 'r-room' }, body: i }));
    const resumed = await resumeFrom(store, 'room', subjects.storedRoom('r-room'), acks[1]!.pos);
    expect(resumed.recovered).toBe(true);
    expect(bodies(resumed.frames.map((f) => f.frame))).toEqual([2, 3]);
    const hold = new Hold(10);
    // A live message the barrier already covers, and one after it.
    hold.push(resumed.top, resumed.frames.at(-1)!.frame);
    const later = await p.publishChat({ from: 'r-x', to: { room: 'r-room' }, body: 4 });
    const seq = store.sequenceOf('room', later.pos)!;
    hold.push(seq, withPosition(Buffer.from('{"type":"message","body":4}'), later.pos!)!);
    expect(bodies(hold.release(resumed))).toEqual([2, 3, 4]);
  });

  it('durable resume - an unknown, malformed or future position recovers nothing', async () => {
    const p = publisher();
    const ack = await p.publishChat({ from: 'r-x', to: { room: 'r-two' }, body: 0 });
    const stored = subjects.storedRoom('r-two');
    const last = store.sequenceOf('room', ack.pos)!;
    for (const since of ['AAAAAAAA-1', 'nonsense', store.position('room', last + 1000), store.position('user', last)]) {
      expect(await resumeFrom(store, 'room', stored, since)).toMatchObject({ recovered: false, frames: [] });
    }
    expect(await resumeFrom(store, 'room', stored, ack.pos)).toMatchObject({ recovered: true, frames: [] });
  });
});

describe('durable publish - keys and order', () => {
  it('durable publish - the same key of the same user is stored once and answered with the same msgId and pos', async () => {
    const p = publisher();
    const a = await p.publishChat({ from: 'k-ann', to: { user: 'k-ben' }, body: 'a', key: 'k1' });
    const b = await p.publishChat({ from: 'k-ann', to: { user: 'k-ben' }, body: 'a', key: 'k1' });
    const c = await p.publishChat({ from: 'k-cy', to: { user: 'k-ben' }, body: 'a', key: 'k1' });
    expect(b).toEqual({ ...a, duplicate: true });
    expect(c.pos).not.toBe(a.pos);
    expect(c.msgId).not.toBe(a.msgId);
  });

  it('durable publish - after one send fails, those queued behind it fail without being published', async () => {
    const order = new SendOrder();
    const ran: number[] = [];
    const results = await Promise.allSettled([
      order.run(async () => ran.push(1)),
      order.run(async () => {
        ran.push(2);
        throw new Error('no ack');
      }),
      order.run(async () => ran.push(3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
    expect(ran).toEqual([1, 2]);
    expect(await order.run(async () => 'again')).toBe('again');
  });
});

describe('durable live path - the RePublish headers', () => {
  it('durable live path - the sequence headers are read as numbers; a message without them passes as ephemeral; bad values are dropped', async () => {
    const heard: Array<{ seq: number; body: string }> = [];
    const sequencer = new LiveSequencer(
      store,
      (_subject, seq, data) => heard.push({ seq, body: Buffer.from(data).toString() }),
      () => {},
      silentLogger,
    );
    const subject = subjects.user('h-ann');
    const done = new Promise<void>((resolve) => {
      nc.subscribe(subject, {
        callback: (_err, msg: Msg) => {
          if (msg.string() === 'barrier') return resolve();
          sequencer.accept(subject, msg);
        },
      });
    });
    await nc.flush();
    const send = (body: string, h?: Record<string, string>) => {
      const hdrs = h ? headers() : undefined;
      for (const [k, v] of Object.entries(h ?? {})) hdrs!.set(k, v);
      nc.publish(subject, body, hdrs ? { headers: hdrs } : {});
    };
    send('plain');
    send('other-headers', { 'X-Other': '5' });
    send('first', { 'Nats-Stream': 'S', 'Nats-Sequence': '9007199254740', 'Nats-Time-Stamp': 'x', 'Nats-Last-Sequence': '0' });
    send('not-a-number', { 'Nats-Sequence': '12x', 'Nats-Last-Sequence': '9007199254740' });
    send('bad-prev', { 'Nats-Sequence': '9007199254741', 'Nats-Last-Sequence': '-1' });
    send('second', { 'Nats-Last-Sequence': '9007199254740', 'Nats-Sequence': '9007199254745' });
    send('barrier');
    await done;
    expect(heard).toEqual([
      { seq: 0, body: 'plain' },
      { seq: 0, body: 'other-headers' },
      { seq: 9007199254740, body: 'first' },
      { seq: 9007199254745, body: 'second' },
    ]);
  });
});
