/**
 * After an auth outage: every session that was admitted by local verification (`degraded: true`)
 * is checked again with the auth service. Paced, so a fleet of gateways coming out of the same
 * outage does not stampede the service: each node starts after a random delay of up to a second,
 * then checks `recheckPerSecond` sessions a second. One that fails closes with 4001; one that
 * passes is no longer degraded; one that cannot be asked stays degraded until the next recovery.
 */
import type { AuthGate } from './auth-gate.ts';
import type { Logger } from './log.ts';
import type { Session } from './session.ts';

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** A node's re-check: calling it while a re-check runs joins that one. */
export function createRechecker(sessions: ReadonlyMap<string, Session>, auth: AuthGate, log: Logger) {
  let running: Promise<void> | undefined;
  return (): Promise<void> => (running ??= (async () => {
    try {
      await wait(Math.random() * 1000);
      const spacing = 1000 / Math.max(1, auth.recheckPerSecond);
      let confirmed = 0;
      let closed = 0;
      for (const session of [...sessions.values()]) {
        const token = session.degradedToken;
        if (!token) continue;
        if (!auth.breaker.getSnapshot().matches('closed')) break;
        const verdict = await auth.verifyRemote(token);
        if (verdict.outcome === 'ok' && verdict.claims.sub === session.actor.getSnapshot().context.user) {
          session.degradedToken = undefined;
          session.actor.send({ type: 'session.confirmed' });
          confirmed += 1;
        } else if (verdict.outcome !== 'unavailable') {
          session.degradedToken = undefined;
          session.actor.send({ type: 'session.revoked', reason: `re-check failed: ${verdict.outcome}` });
          closed += 1;
        }
        await wait(spacing);
      }
      if (confirmed + closed > 0) log.info({ confirmed, closed }, 'degraded sessions re-checked');
    } finally {
      running = undefined;
    }
  })());
}
