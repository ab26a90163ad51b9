/**
 * Degraded sessions: those admitted by local verification (`degraded: true`) while the auth service
 * could not be asked. This module owns all of it: the token each one holds until it is re-checked,
 * when a re-check is scheduled, and the paced run.
 *
 * Schedule: every time the breaker closes again (`auth.onRecovered`), and one second after a
 * session is admitted locally while the breaker is closed (a failed call that did not open the
 * breaker: no recovery will come to re-check it).
 *
 * The run is paced, so a fleet of gateways coming out of the same outage does not stampede the
 * service: each node starts after a random delay of up to a second, then checks `perSecond`
 * sessions a second. One that fails closes with 4001; one that passes is no longer degraded. The
 * run stops at the first answer that says the service cannot be asked (those sessions wait for the
 * next recovery), and runs again when it was asked for while it ran, so sessions degraded meanwhile
 * are not skipped.
 */
import type { AuthGate } from '../auth/gate.ts';
import type { Logger } from '../log.ts';
import type { Session } from './session.ts';

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

export interface DegradedSessions {
  /** Keeps (or, when `token` is undefined, forgets) the token a session is to be re-checked with. Never logged. */
  hold(session: Session, token: string | undefined): void;
  /** Forgets a session that ended. */
  release(session: Session): void;
  /** A verification answered `degraded`: schedules a re-check when no recovery will come to do it. */
  admittedLocally(): void;
  /** Re-checks every held session now (paced). Calling it while a run goes makes that run go round once more. */
  recheck(): void;
}

export function createDegradedSessions(options: {
  sessions: ReadonlyMap<string, Session>;
  auth: Pick<AuthGate, 'verifyRemote' | 'breaker' | 'onRecovered'>;
  /** Sessions re-checked per second. */
  perSecond: number;
  log: Logger;
}): DegradedSessions {
  const { sessions, auth, log } = options;
  /** Only while degraded: the token to re-check once the auth service is back. */
  const held = new Map<Session, string>();
  let running = false;
  let again = false;

  const runOnce = async () => {
    await wait(Math.random() * 1000);
    const spacing = 1000 / Math.max(1, options.perSecond);
    let confirmed = 0;
    let closed = 0;
    for (const session of [...sessions.values()]) {
      const token = held.get(session);
      if (!token) continue;
      const verdict = await auth.verifyRemote(token);
      if (verdict.outcome === 'unavailable') break;
      held.delete(session);
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

  const recheck = (): void => {
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

  // Once the auth service is back, sessions admitted without it are checked again, paced.
  auth.onRecovered(recheck);

  return {
    hold: (session, token) => {
      if (token) held.set(session, token);
      else held.delete(session);
    },
    release: (session) => void held.delete(session),
    admittedLocally: () => {
      if (auth.breaker.getSnapshot().matches('closed')) setTimeout(recheck, 1000).unref();
    },
    recheck,
  };
}
