/**
 * The gateway's side of the auth check: a NATS request to the auth service's queue group.
 * NATS errors become an `unavailable` verdict here, with the kind of failure the breaker needs
 * (no responders, timeout, other); the token itself never appears in a log or a verdict.
 */
import { RequestError, TimeoutError, type NatsConnection } from '@nats-io/nats-core';
import type { FailureKind } from '../../machines/circuit-breaker.machine.ts';
import type { VerifyResult } from '../../machines/connection.machine.ts';
import { subjects } from '../subjects.ts';

/** The auth service's verdict, and when it could not be asked, how the request failed. */
export type RemoteVerdict =
  | { result: VerifyResult; failure?: undefined }
  | { result: { outcome: 'unavailable'; reason: string }; failure: FailureKind };

function failureOf(err: unknown): { kind: FailureKind; reason: string } {
  if (err instanceof RequestError && err.isNoResponders()) return { kind: 'noResponders', reason: 'no auth service responders' };
  if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError)) {
    return { kind: 'timeout', reason: 'auth request timed out' };
  }
  return { kind: 'error', reason: 'auth request failed' };
}

function isVerdict(value: unknown): value is VerifyResult {
  if (typeof value !== 'object' || value === null) return false;
  const outcome = (value as { outcome?: unknown }).outcome;
  if (outcome === 'ok') {
    const claims = (value as { claims?: { sub?: unknown; exp?: unknown } }).claims;
    return typeof claims?.sub === 'string' && typeof claims.exp === 'number';
  }
  return outcome === 'invalid' || outcome === 'expired';
}

const unavailable = (kind: FailureKind, reason: string): RemoteVerdict => ({
  result: { outcome: 'unavailable' as const, reason },
  failure: kind,
});

/** Asks the auth service over NATS for its verdict on one token. */
export async function requestVerdict(nc: NatsConnection, token: string, timeout: number): Promise<RemoteVerdict> {
  let reply;
  try {
    reply = await nc.request(subjects.authVerify, JSON.stringify({ token }), { timeout });
  } catch (err) {
    const { kind, reason } = failureOf(err);
    return unavailable(kind, reason);
  }
  let verdict: unknown;
  try {
    verdict = reply.json();
  } catch {
    return unavailable('error', 'auth reply is not JSON');
  }
  if (!isVerdict(verdict)) return unavailable('error', 'auth reply malformed');
  return { result: verdict.outcome === 'ok' ? { ...verdict, degraded: false } : verdict };
}
