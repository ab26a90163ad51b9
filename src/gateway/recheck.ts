/**
 * After an auth outage: every session that was admitted by local verification (`degraded: true`)
 * is checked again with the auth service, through the breaker. Paced, so a fleet of gateways
 * coming out of the same outage does not stampede the service: each node starts after a random
 * delay of up to a second, then checks `recheckPerSecond` sessions a second. One that fails
 * closes with 4001; one that passes is no longer degraded. The run stops at the first answer
 * that says the service cannot be asked (those sessions wait for the next recovery), and runs
 * again when it was asked for while it ran, so sessions degraded meanwhile are not skipped.
 */
import type { AuthGate } from '../auth/gate.ts';
import type { Logger } from '../log.ts';
import type { Session } from './session.ts';

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** A node's re-check. Calling it while one runs makes that run go round once more. */
export function createRechecker(sessions: ReadonlyMap<string, Session>, auth: AuthGate, log: Logger) {
  let running = false;
  let again = false;

  const runOnce = async () => {
    await wait(Math.random() * 1000);
    const spacing = 1000 / Math.max(1, auth.recheckPerSecond);
    let confirmed = 0;
    let closed = 0;
    for (const session of [...sessions.values()]) {
      const token = session.degradedToken;
      if (!token) continue;
      const verdict = await auth.verifyRemote(token);
      if (verdict.outcome === 'unavailable') break;
      session.degradedToken = undefined;
      if (verdict.outcome === 'ok' && verdict.claims.sub === session.actor.getSnapshot().context.user) {
        session.actor.send({ type: 'session.confirmed' });
        confirmed += 1;
      } else {
        session.actor.send({ type: 'session.revoked', reason: `re-check failed: ${verdict.outcome}` });
        closed += 1;
      }
      await wait(spacing);
    }
    if (confirmed + closed > 0) log.info({ confirmed, closed }, 'degraded sessions re-checked');
  };

  return (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    void (async () => {
      try {
        do {
          again = false;
          await runOnce();
        } while (again);
      } catch (err) {
        log.error({ err }, 're-check failed');
      } finally {
        running = false;
      }
    })();
  };
}
