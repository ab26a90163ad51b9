/**
 * A node's auth gate over real NATS: the cached key set it verifies with while the auth service
 * cannot be asked is refreshed while the service is up (JWKS refresh), and degraded sessions are
 * re-checked at RECHECK_PER_SECOND once it is back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from 'xstate';
import { startAuthGate } from '../../src/auth/gate.ts';
import { loadSigningKeys } from '../../src/auth/keys.ts';
import { createLogger } from '../../src/log.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { subjects } from '../../src/subjects.ts';
import { mintToken } from '../../src/auth/tokens.ts';
import { startStack, type Stack } from '../harness/stack.ts';
import { until } from '../harness/sync.ts';

let stack: Stack | undefined;
const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stack?.stop();
  stack = undefined;
});

describe('auth gate - keys and re-checks', () => {
  it('auth gate - the cached key set is refreshed while the service is up, and local checks use the new one', async () => {
    stack = await startStack({ nodes: 0 });
    const nc = await connectNats(stack.nats[0]!.url, 'gate-under-test');
    cleanups.push(() => closeNats(nc));
    const gate = await startAuthGate({ nc, log: createLogger({ level: 'silent' }), jwksRefreshMs: 100 });
    cleanups.push(() => gate.stop());
    const oldKeys = stack.keys;

    // The auth service goes; in its place only a key set with another key is served.
    await stack.auth!.close();
    const otherHome = await mkdtemp(join(tmpdir(), 'chatgate-other-keys-'));
    cleanups.push(() => rm(otherHome, { recursive: true, force: true }));
    const newKeys = await loadSigningKeys(otherHome);
    const served = await connectNats(stack.nats[0]!.url, 'other-jwks');
    cleanups.push(() => closeNats(served));
    let asked = 0;
    served.subscribe(subjects.authJwks, {
      callback: (_err, msg) => {
        asked += 1;
        msg.respond(JSON.stringify(newKeys.jwks));
      },
    });
    await served.flush();
    // Two refreshes answered: the first has surely been applied when the second is asked.
    await until('the gate has refreshed its keys twice', () => asked >= 2);

    // No auth service answers a check: the gate verifies locally, with the refreshed keys.
    const fresh = await gate.verify(await mintToken(newKeys, { sub: 'k-new' }));
    expect(fresh).toMatchObject({ outcome: 'ok', degraded: true, claims: { sub: 'k-new' } });
    expect(await gate.verify(await mintToken(oldKeys, { sub: 'k-old' }))).toMatchObject({ outcome: 'invalid' });
  });

  it('auth gate - degraded sessions are re-checked at RECHECK_PER_SECOND once the service is back', async () => {
    const perSecond = 5;
    stack = await startStack({
      gateway: { recheckPerSecond: perSecond, authRequestTimeoutMs: 300, breaker: { openBaseMs: 100, openMaxMs: 200, probeIntervalMs: 50 } },
    });
    const gateway = stack.gateways[0]!;
    await stack.auth!.close();
    const users = ['p-1', 'p-2', 'p-3', 'p-4'];
    const confirmedAt = new Map<string, number>();
    for (const user of users) {
      const { welcome } = await stack.session(0, user);
      expect(welcome.degraded).toBe(true);
      const session = gateway.sessions.get(welcome.session as string)!;
      session.actor.subscribe((s) => {
        if (!s.context.degraded && !confirmedAt.has(user)) confirmedAt.set(user, performance.now());
      });
    }
    await stack.startAuth();
    await waitFor(gateway.auth.breaker, (b) => b.matches('closed'), { timeout: 10_000 });
    await until('every degraded session is confirmed', () => confirmedAt.size === users.length, 10_000);
    const times = [...confirmedAt.values()].sort((a, b) => a - b);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // One every 1000 / perSecond ms at most: timers never fire early, so this is a lower bound.
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(1000 / perSecond - 5);
  });
});
