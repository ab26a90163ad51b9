/**
 * The node's sessions, by id, with what is done to all of them at once: the heartbeat (a ping per
 * interval; a session that did not answer the last one gets `heartbeat.lost`), revocations heard
 * on NATS, and the drain at shutdown (every session gets `node.shutdown`; what is still open at
 * the deadline is cut).
 */
import type { AuthGate } from '../auth/gate.ts';
import type { Revocation } from '../auth/revocations.ts';
import type { Session } from './session.ts';

export type Sessions = Map<string, Session>;

/** Pings every session each `intervalMs`; returns the stop. */
export function startHeartbeat(sessions: Sessions, intervalMs: number): () => void {
  const heartbeat = setInterval(() => {
    for (const session of sessions.values()) {
      if (!session.alive) {
        session.actor.send({ type: 'heartbeat.lost' });
        continue;
      }
      session.alive = false;
      session.ws.ping();
    }
  }, intervalMs);
  heartbeat.unref();
  return () => clearInterval(heartbeat);
}

/** Closes every session the revocation `r` applies to (revocations heard on NATS). */
export function closeRevoked(sessions: Sessions, revocations: AuthGate['revocations'], r: Revocation): void {
  for (const session of sessions.values()) {
    const { user, jti, iat } = session.actor.getSnapshot().context;
    if (revocations.isRevoked({ sub: user, jti, iat }) && ((r.sub !== undefined && user === r.sub) || (r.jti !== undefined && jti === r.jti))) {
      session.actor.send({ type: 'session.revoked', reason: 'token revoked' });
    }
  }
}

/** Tells every session the node shuts down, waits up to `timeoutMs` for them to close, then cuts the rest. */
export async function drainSessions(sessions: Sessions, timeoutMs: number): Promise<void> {
  for (const session of sessions.values()) session.actor.send({ type: 'node.shutdown' });
  const deadline = Date.now() + timeoutMs;
  while (sessions.size > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const session of sessions.values()) session.ws.terminate();
}
