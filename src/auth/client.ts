/**
 * The gateway's side of the auth check: what the auth service's reply means. The requests
 * themselves go over one shared reply subscription (verify-requests.ts); NATS failures become an
 * `unavailable` verdict, with the kind of failure the breaker needs (no responders, timeout,
 * other); the token itself never appears in a log or a verdict.
 */
import type { FailureKind } from '../../machines/circuit-breaker.machine.ts';
import type { VerifyResult } from '../../machines/connection.machine.ts';

/** The auth service's verdict, and when it could not be asked, how the request failed. */
export type RemoteVerdict =
  | { result: VerifyResult; failure?: undefined }
  | { result: { outcome: 'unavailable'; reason: string }; failure: FailureKind };

function isVerdict(value: unknown): value is VerifyResult {
  if (typeof value !== 'object' || value === null) return false;
  const outcome = (value as { outcome?: unknown }).outcome;
  if (outcome === 'ok') {
    const claims = (value as { claims?: { sub?: unknown; exp?: unknown } }).claims;
    return typeof claims?.sub === 'string' && typeof claims.exp === 'number';
  }
  return outcome === 'invalid' || outcome === 'expired';
}

export const unavailable = (kind: FailureKind, reason: string): RemoteVerdict => ({
  result: { outcome: 'unavailable' as const, reason },
  failure: kind,
});

/** The auth service's reply to a verify request, checked: its verdict, or `unavailable`. */
export function verdictOf(reply: { json<T>(): T }): RemoteVerdict {
  let verdict: unknown;
  try {
    verdict = reply.json();
  } catch {
    return unavailable('error', 'auth reply is not JSON');
  }
  if (!isVerdict(verdict)) return unavailable('error', 'auth reply malformed');
  return { result: verdict.outcome === 'ok' ? { ...verdict, degraded: false } : verdict };
}
