/**
 * Reflection through the auth service's replies (attack review of issue 9, finding 1): a gateway
 * credential asks `auth.jwks` or `auth.verify` with a reply subject of its choosing, such as a key
 * of the revocations bucket or the JetStream API. The auth service must answer only on the askers'
 * inboxes, and the bus must refuse the auth role's publish to anything else even if the code
 * regressed. A real, locked-down nats-server with JetStream.
 *
 * Absence without sleeping: one auth service instance handles one subscription's messages in
 * order, so once the gateway's own legit `auth.jwks` request (sent after the reflected ones on the
 * same connection) is answered, the reflected ones have been handled.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors, type NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, type NatsServer } from '../../src/bus/nats-server.ts';
import { ensureRoleCredentials } from '../../src/bus/credentials.ts';
import { authorizationConfig } from '../../src/bus/server-config.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { startAuthService, type AuthService } from '../../src/auth/service.ts';
import { ensureRevocationBucket, storeRevocation } from '../../src/auth/revocation-store.ts';
import { revocationKey } from '../../src/auth/revocations.ts';
import { capturedLog } from '../harness/log-lines.ts';
import { startGateway } from '../../src/gateway/gateway.ts';
import { AUTH_QUEUE, REVOCATIONS_BUCKET, subjects } from '../../src/subjects.ts';

const STREAM = `KV_${REVOCATIONS_BUCKET}`;
let home: string;
let server: NatsServer | undefined;
const connections: NatsConnection[] = [];
const services: AuthService[] = [];

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'chatgate-reflect-'));
  const keys = await ensureRoleCredentials(home);
  server = await startNatsServer({ port: -1, jetstreamDir: join(home, 'js'), authorization: authorizationConfig(keys) });
});
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
  await Promise.all(connections.splice(0).map((nc) => closeNats(nc)));
});
afterAll(async () => {
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

async function as(role: 'gateway' | 'auth'): Promise<NatsConnection> {
  const nc = await connectNats(server!.url, `test-${role}`, { role, home });
  connections.push(nc);
  return nc;
}

/** What the bucket holds: the revocation under `key` and the stream's message count. */
async function bucketState(nc: NatsConnection, key: string) {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(STREAM);
  const msg = await jsm.streams.getMessage(STREAM, { last_by_subj: `$KV.${REVOCATIONS_BUCKET}.${key}` }).catch(() => undefined);
  return { messages: info.state.messages, value: msg?.string() };
}

describe('bus - reflection through the auth role’s replies', () => {
  it('bus - a gateway cannot make the auth service write or purge the revocations bucket', async () => {
    const { log, lines } = capturedLog();
    services.push(await startAuthService({ natsUrl: server!.url, home, log }));
    const authNc = await as('auth');
    const revoked = await authNc.request(subjects.authRevoke, JSON.stringify({ sub: 'victim' }), { timeout: 5000 });
    expect(revoked.json<{ ok: boolean }>().ok).toBe(true);
    const key = revocationKey({ sub: 'victim', at: 0 });
    const before = await bucketState(authNc, key);
    expect(before.value).toContain('victim');

    const gw = await as('gateway');
    for (let i = 0; i < 50; i++) {
      gw.publish(subjects.authJwks, '', { reply: `$KV.${REVOCATIONS_BUCKET}.${key}` });
      gw.publish(subjects.authVerify, '{"token":"x"}', { reply: `$KV.${REVOCATIONS_BUCKET}.jti.junk${i}` });
      gw.publish(subjects.authJwks, '', { reply: `$JS.API.STREAM.PURGE.${STREAM}` });
    }
    // The barrier: a legit request on the same connection, answered after the reflected ones.
    await gw.request(subjects.authJwks, '', { timeout: 5000 });
    await gw.request(subjects.authVerify, '{"token":"x"}', { timeout: 5000 });

    expect(await bucketState(authNc, key)).toEqual(before);
    // Refused with bounded log lines, not one per request.
    const refusals = lines.filter((l) => l.includes('reply subject refused'));
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.length).toBeLessThanOrEqual(10);
  });

  it('bus - a flood of refused tokens and malformed revoke requests is answered in full and logged within the budget', async () => {
    const { log, lines } = capturedLog();
    services.push(await startAuthService({ natsUrl: server!.url, home, log }));
    const gw = await as('gateway');
    const authNc = await as('auth');
    const answers = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const verdict = await gw.request(subjects.authVerify, JSON.stringify({ token: `not-a-jwt-${i}` }), { timeout: 5000 });
        const revoke = await authNc.request(subjects.authRevoke, JSON.stringify({ jti: 'a', sub: 'b' }), { timeout: 5000 });
        return [verdict.json<{ outcome: string }>().outcome, revoke.json<{ ok: boolean }>().ok];
      }),
    );
    expect(answers.every(([outcome, ok]) => outcome === 'invalid' && ok === false)).toBe(true);
    for (const message of ['token refused', 'malformed revoke request']) {
      const logged = lines.filter((l) => l.includes(message));
      expect(logged.length, message).toBeGreaterThan(0);
      expect(logged.length, message).toBeLessThanOrEqual(10);
    }
  });

  it('bus - the server refuses an auth role reply to the JetStream API, even from a naive responder', async () => {
    // A regressed auth service: it answers on whatever reply subject it is given. The bus refuses
    // what the auth role has no right to (purge, delete); a write to `$KV.…` it has the right to,
    // so against that only the service's own check (the test above) stands.
    const authNc = await as('auth');
    const kv = await ensureRevocationBucket(authNc);
    await storeRevocation(kv, { sub: 'victim2', at: 1 });
    const key = revocationKey({ sub: 'victim2', at: 1 });
    const before = await bucketState(authNc, key);
    const violations: string[] = [];
    void (async () => {
      for await (const s of authNc.status()) {
        if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) violations.push(s.error.subject);
      }
    })();
    authNc.subscribe(subjects.authJwks, { queue: AUTH_QUEUE, callback: (_err, msg) => void msg.respond('{"keys":[]}') });
    await authNc.flush();

    const gw = await as('gateway');
    gw.publish(subjects.authJwks, '', { reply: `$JS.API.STREAM.PURGE.${STREAM}` });
    gw.publish(subjects.authJwks, '', { reply: `$JS.API.STREAM.DELETE.${STREAM}` });
    // The barrier: the legit request is answered on the gateway's inbox.
    const answer = await gw.request(subjects.authJwks, '', { timeout: 5000 });
    expect(answer.string()).toBe('{"keys":[]}');
    await authNc.flush();
    // The server's -ERR lines come before the flush's PONG, but nats.js hands them to the status
    // iterator asynchronously: wait (bounded) until it has both.
    const deadline = Date.now() + 5000;
    while (violations.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));

    expect(violations).toEqual(expect.arrayContaining([`$JS.API.STREAM.PURGE.${STREAM}`, `$JS.API.STREAM.DELETE.${STREAM}`]));
    expect(await bucketState(authNc, key)).toEqual(before);
  });

  it('bus - what lands on auth.jwks.announce that is no key set (a push consumer can deliver there) is logged within the budget', async () => {
    services.push(await startAuthService({ natsUrl: server!.url, home }));
    const { log, lines } = capturedLog();
    const gateway = await startGateway({ natsUrl: server!.url, natsHome: home, port: 0, host: '127.0.0.1', log });
    try {
      // A later subscription on the gateway's own connection: once it has the barrier, the
      // gateway's key set subscription has handled everything published before it.
      let barrier!: () => void;
      const seen = new Promise<void>((resolve) => (barrier = resolve));
      gateway.nc.subscribe(subjects.authJwksAnnounce, {
        callback: (_err, msg) => {
          if (msg.string() === 'barrier') barrier();
        },
      });
      await gateway.nc.flush();
      const authNc = await as('auth');
      for (let i = 0; i < 50; i++) authNc.publish(subjects.authJwksAnnounce, '');
      authNc.publish(subjects.authJwksAnnounce, 'barrier');
      await authNc.flush();
      await seen;
      const malformed = lines.filter((l) => l.includes('malformed key set announced'));
      expect(malformed.length).toBeGreaterThan(0);
      expect(malformed.length).toBeLessThanOrEqual(11);
    } finally {
      await gateway.close();
    }
  });
});
