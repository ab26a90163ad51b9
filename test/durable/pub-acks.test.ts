/**
 * PubAcks (src/durable/pub-acks.ts) against answers that are not a stream's: whatever arrives on
 * a publish's reply subject (a role that may publish into the gateway's inboxes, a bug) answers
 * that publish once, with a failure, and never stops the connection from reading.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { startNats, type NatsServer } from '../harness/nats.ts';
import { PubAcks } from '../../src/durable/pub-acks.ts';
import { ChatgateErrorCode } from '../../src/errors.ts';
import { rawPublish } from '../harness/raw-nats.ts';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/log.ts';

let server: NatsServer;
let answerer: NatsConnection;
/** Each test's own publishing connection: one whose reader a test stopped would fail the next. */
let nc: NatsConnection;
beforeAll(async () => {
  server = await startNats({ jetstream: false });
  answerer = await connect({ servers: server.url });
});
beforeEach(async () => {
  nc = await connect({ servers: server.url });
});
afterEach(async () => {
  await nc?.close();
});
afterAll(async () => {
  await answerer?.close();
  await server?.stop();
});

/** A stand-in "stream" on `subject` that answers every publish with `answer` (payload, optional header). */
async function answering(subject: string, answer: string, header?: [string, string]): Promise<Subscription> {
  const sub = answerer.subscribe(subject, {
    callback: (_err, msg) => {
      if (!header) return void msg.respond(answer);
      const h = headers();
      h.set(header[0], header[1]);
      msg.respond(answer, { headers: h });
    },
  });
  await answerer.flush();
  return sub;
}

/** Settles within `ms`, or says it did not. */
function within<T>(p: Promise<T>, ms: number): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | 'pending'> {
  return Promise.race([
    p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })),
    new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), ms)),
  ]);
}

describe('pub-acks - answers that are not a PubAck', () => {
  it.each([
    ['JSON null', 'null'],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"ok"'],
    ['an error that is not an object', '{"error":null}'],
    ['a seq that is not a number', '{"stream":"S","seq":"7"}'],
    ['not JSON', '{"stream":'],
  ])('pub-acks - %s is a failure of that publish, and the connection keeps reading', async (_name, answer) => {
    const acks = new PubAcks(nc, 10_000);
    const subject = `fake.stream.${Math.random().toString(36).slice(2)}`;
    const sub = await answering(subject, answer);
    try {
      const outcome = await within(acks.publish(subject, 'm'), 3000);
      expect(outcome).not.toBe('pending');
      expect(outcome).toMatchObject({ ok: false, error: { code: ChatgateErrorCode.messageStore } });
      // The reader still runs: a round trip to the server completes, and a real PubAck is taken.
      expect(await within(nc.flush(), 3000)).toMatchObject({ ok: true });
      sub.unsubscribe();
      const good = await answering(subject, '{"stream":"S","seq":7}');
      expect(await within(acks.publish(subject, 'm'), 3000)).toEqual({ ok: true, value: { stream: 'S', seq: 7, duplicate: false } });
      good.unsubscribe();
    } finally {
      sub.unsubscribe();
    }
  });

  it('pub-acks - an empty answer with a status header is a failure naming no stream', async () => {
    const acks = new PubAcks(nc, 10_000);
    const subject = `fake.stream.${Math.random().toString(36).slice(2)}`;
    const sub = await answering(subject, '', ['X-Anything', 'x']);
    try {
      const outcome = await within(acks.publish(subject, 'm'), 3000);
      expect(outcome).toMatchObject({ ok: false, error: { code: ChatgateErrorCode.messageStore } });
      expect(await within(nc.flush(), 3000)).toMatchObject({ ok: true });
    } finally {
      sub.unsubscribe();
    }
  });

  it('pub-acks - an empty answer with a malformed header block is a failure, and the connection keeps reading', async () => {
    const acks = new PubAcks(nc, 10_000);
    const subject = `fake.stream.${Math.random().toString(36).slice(2)}`;
    const sub = answerer.subscribe(subject, {
      callback: (_err, msg) => void rawPublish(server.url, msg.reply!, 'NATS/1.0\r\nbad key: v\r\n\r\n'),
    });
    await answerer.flush();
    try {
      const outcome = await within(acks.publish(subject, 'm'), 3000);
      expect(outcome).toMatchObject({ ok: false, error: { code: ChatgateErrorCode.messageStore } });
      expect(await within(nc.flush(), 3000)).toMatchObject({ ok: true });
    } finally {
      sub.unsubscribe();
    }
  });

  it('pub-acks - a flood of answers that are not PubAcks fails each publish and logs within a budget', async () => {
    const lines: string[] = [];
    const out = new PassThrough();
    out.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
    const acks = new PubAcks(nc, 10_000, createLogger({ destination: out }));
    const subject = `fake.stream.${Math.random().toString(36).slice(2)}`;
    const sub = await answering(subject, '{"not":"an ack"}');
    try {
      const outcomes = await Promise.all(Array.from({ length: 50 }, () => within(acks.publish(subject, 'm'), 5000)));
      expect(outcomes.every((o) => o !== 'pending' && !o.ok)).toBe(true);
      await new Promise<void>((resolve) => setImmediate(resolve));
      const logged = lines.filter((l) => l.includes('pub ack not understood'));
      expect(logged.length).toBeGreaterThan(0);
      expect(logged.length).toBeLessThanOrEqual(10);
    } finally {
      sub.unsubscribe();
    }
  });
});
