/**
 * The gateway's auth requests over one shared reply subscription (src/auth/verify-requests.ts),
 * against a real nats-server: each request gets its own answer, whatever the order the answers
 * come in; no responders, no answer in time and a malformed answer each become `unavailable`
 * with the failure kind the breaker needs, as `nc.request` gave before; a late answer is ignored.
 */
import { afterEach, expect, test } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNats, type NatsServer } from '../harness/nats.ts';
import { VerifyRequests } from '../../src/auth/verify-requests.ts';
import { AUTH_QUEUE, subjects } from '../../src/subjects.ts';
import { rawPublish } from '../harness/raw-nats.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ server: NatsServer; gateway: NatsConnection; service: NatsConnection }> {
  const server = await startNats({ jetstream: false });
  cleanups.push(() => server.stop());
  const gateway = await connect({ servers: server.url });
  cleanups.push(() => gateway.close());
  const service = await connect({ servers: server.url });
  cleanups.push(() => service.close());
  return { server, gateway, service };
}

test('verify requests - many at once, answered out of order, each gets its own verdict', async () => {
  const { gateway, service } = await setup();
  const held: Array<{ token: string; respond: (data: string) => boolean }> = [];
  service.subscribe(subjects.authVerify, {
    queue: AUTH_QUEUE,
    callback: (_err, msg) => {
      held.push({ token: msg.json<{ token: string }>().token, respond: (d) => msg.respond(d) });
      if (held.length < 50) return;
      // All asked: answer in reverse order, each with its own token as the user.
      for (const h of held.reverse()) {
        h.respond(JSON.stringify({ outcome: 'ok', claims: { sub: `user-${h.token}`, exp: 1, rooms: [] } }));
      }
    },
  });
  await service.flush();
  const requests = new VerifyRequests(gateway, 5000);
  cleanups.push(() => requests.close());
  const verdicts = await Promise.all(Array.from({ length: 50 }, (_, i) => requests.verdict(`t${i}`)));
  verdicts.forEach((v, i) => {
    expect(v.failure).toBeUndefined();
    expect(v.result).toMatchObject({ outcome: 'ok', degraded: false, claims: { sub: `user-t${i}` } });
  });
});

test('verify requests - no responders, no answer in time, a malformed answer: unavailable, with the failure kind', async () => {
  const { gateway, service } = await setup();
  const requests = new VerifyRequests(gateway, 300);
  cleanups.push(() => requests.close());
  // Nobody listens: the server says so at once.
  const started = performance.now();
  expect(await requests.verdict('x')).toEqual({
    result: { outcome: 'unavailable', reason: 'no auth service responders' },
    failure: 'noResponders',
  });
  expect(performance.now() - started).toBeLessThan(300);

  // A responder that answers nothing, then (too late) something.
  const late: Array<() => void> = [];
  const sub = service.subscribe(subjects.authVerify, {
    callback: (_err, msg) => {
      late.push(() => msg.respond(JSON.stringify({ outcome: 'invalid', reason: 'late' })));
    },
  });
  await service.flush();
  expect(await requests.verdict('y')).toEqual({
    result: { outcome: 'unavailable', reason: 'auth request timed out' },
    failure: 'timeout',
  });
  for (const answer of late) answer();
  await service.flush();
  sub.unsubscribe();

  // Not JSON, then JSON that is not a verdict.
  const answers = ['{nope', JSON.stringify({ outcome: 'ok', claims: {} })];
  service.subscribe(subjects.authVerify, { callback: (_err, msg) => void msg.respond(answers.shift()!) });
  await service.flush();
  expect(await requests.verdict('z')).toEqual({ result: { outcome: 'unavailable', reason: 'auth reply is not JSON' }, failure: 'error' });
  expect(await requests.verdict('w')).toEqual({ result: { outcome: 'unavailable', reason: 'auth reply malformed' }, failure: 'error' });
});

test('verify requests - once closed, waiting and new requests are unavailable', async () => {
  const { gateway, service } = await setup();
  service.subscribe(subjects.authVerify, { callback: () => {} });
  await service.flush();
  const requests = new VerifyRequests(gateway, 5000);
  const waiting = requests.verdict('a');
  requests.close();
  expect(await waiting).toMatchObject({ result: { outcome: 'unavailable' }, failure: 'error' });
  expect(await requests.verdict('b')).toMatchObject({ result: { outcome: 'unavailable' }, failure: 'error' });
});

test('verify requests - an empty answer with a malformed header block is unavailable, and the connection keeps reading', async () => {
  const { server, gateway, service } = await setup();
  const requests = new VerifyRequests(gateway, 3000);
  cleanups.push(() => requests.close());
  // Whoever may publish into the gateway's inboxes (the auth role) answers with a header block
  // nats.js cannot parse (its `msg.headers` throws on a header name with a space).
  const sub = service.subscribe(subjects.authVerify, {
    callback: (_err, msg) => void rawPublish(server.url, msg.reply!, 'NATS/1.0\r\nbad key: v\r\n\r\n'),
  });
  await service.flush();
  const started = performance.now();
  expect(await requests.verdict('h')).toMatchObject({ result: { outcome: 'unavailable' }, failure: 'error' });
  // Answered by the malformed answer itself, not by the timeout.
  expect(performance.now() - started).toBeLessThan(2500);
  sub.unsubscribe();
  // The reader still runs: a round trip completes, and a real verdict is taken.
  service.subscribe(subjects.authVerify, {
    callback: (_err, msg) => void msg.respond(JSON.stringify({ outcome: 'invalid', reason: 'nope' })),
  });
  await service.flush();
  await gateway.flush();
  expect(await requests.verdict('g')).toEqual({ result: { outcome: 'invalid', reason: 'nope' } });
});
