/**
 * The gateway's side of the auth check: a NATS request to the auth service's queue group.
 * NATS errors become an `unavailable` verdict here (no responders, timeout, connection closed);
 * the token itself never appears in a log or a verdict.
 */
import { RequestError, TimeoutError, type NatsConnection } from '@nats-io/nats-core';
import type { VerifyResult } from '../machines/connection.machine.ts';
import { subjects } from './subjects.ts';

function unavailableReason(err: unknown): string {
  if (err instanceof RequestError && err.isNoResponders()) return 'no auth service responders';
  if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError)) {
    return 'auth request timed out';
  }
  return 'auth request failed';
}

function isVerifyResult(value: unknown): value is VerifyResult {
  if (typeof value !== 'object' || value === null) return false;
  const outcome = (value as { outcome?: unknown }).outcome;
  if (outcome === 'ok') {
    const claims = (value as { claims?: { sub?: unknown; exp?: unknown } }).claims;
    return typeof claims?.sub === 'string' && typeof claims.exp === 'number';
  }
  return outcome === 'invalid' || outcome === 'expired';
}

/** Asks the auth service over NATS for its verdict on one token. */
export async function requestVerdict(nc: NatsConnection, token: string, timeout: number): Promise<VerifyResult> {
  let reply;
  try {
    reply = await nc.request(subjects.authVerify, JSON.stringify({ token }), { timeout });
  } catch (err) {
    return { outcome: 'unavailable', reason: unavailableReason(err) };
  }
  let verdict: unknown;
  try {
    verdict = reply.json();
  } catch {
    return { outcome: 'unavailable', reason: 'auth reply is not JSON' };
  }
  if (!isVerifyResult(verdict)) return { outcome: 'unavailable', reason: 'auth reply malformed' };
  return verdict.outcome === 'ok' ? { ...verdict, degraded: false } : verdict;
}
