/**
 * How a gateway node checks tokens: through one circuit-breaker actor per node in front of the
 * auth service, with local verification against the cached JWK Set when the service cannot be
 * asked, a paced re-check of the sessions admitted that way once it is back, and the node's
 * copy of every revocation, read from the revocations bucket (src/auth/revocation-watch.ts). Local
 * verification refuses revoked tokens, and is not used before the bucket has been read once.
 *
 *   verify(token) ─▶ breaker lets it through? ─yes─▶ NATS request to the auth service
 *                          │ no, or the request failed
 *                          ▼
 *                   policy 'local' and keys cached? ─yes─▶ jose, locally ─▶ ok, degraded: true
 *                          │ no
 *                          ▼
 *                      unavailable (the connection closes with 1013)
 */
import { createActor, fromPromise, type Actor } from 'xstate';
import { createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import {
  circuitBreakerMachine,
  requestTicket,
  type BreakerOptions,
  type CircuitBreakerMachine,
} from '../../machines/circuit-breaker.machine.ts';
import type { VerifyResult } from '../../machines/connection.machine.ts';
import type { RemoteVerdict } from './client.ts';
import { VerifyRequests } from './verify-requests.ts';
import type { Logger } from '../log.ts';
import type { Observers } from '../observe/observe.ts';
import { limitedLog } from '../bounded-log.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';
import { RevocationList, type Revocation } from './revocations.ts';
import { openRevocationBucket, revocationMaxAgeMs } from './revocation-store.ts';
import { watchRevocations, type RevocationWatchState } from './revocation-watch.ts';
import { subjects } from '../subjects.ts';
import { createTokenVerifier, defaultClaimRules, MAX_TOKEN_LENGTH, type ClaimRules, type TokenVerifier } from './tokens.ts';
import { defaults } from '../defaults.ts';

export type DegradedPolicy = 'local' | 'reject';

export interface AuthGateOptions {
  nc: NatsConnection;
  log: Logger;
  /** How long one auth request may take; also the breaker's slow-call bound. @default 1000 */
  requestTimeoutMs?: number;
  /** When the auth service cannot be asked: verify locally, or refuse with 1013. @default 'local' */
  degradedPolicy?: DegradedPolicy;
  rules?: ClaimRules;
  /** Clock skew allowed for `exp` and `nbf` when verifying locally, in seconds. @default 5 */
  clockToleranceS?: number;
  breaker?: Partial<BreakerOptions>;
  /** How often the cached JWK Set is refreshed while the service is up. @default 60000 */
  jwksRefreshMs?: number;
  now?: () => number;
  random?: () => number;
  /** Where the breaker reports what it lives through (inspector, recorder), as machine `breaker`. */
  observers?: Observers;
  /** The node's id in those observations. @default '' */
  nodeId?: string;
  /** How long start-up waits for the revocations to be read before it serves anyway. @default 5000 */
  revocationsWaitMs?: number;
}

export interface AuthGateStatus {
  breaker: string;
  counts: Record<string, number>;
  keysCached: boolean;
  revocations: number;
  /** The watch of the revocations bucket (src/auth/revocation-watch.ts). */
  revocationsWatch: RevocationWatchState;
}

export interface AuthGate {
  verify: TokenVerifier;
  /**
   * Asks the auth service only, never locally, through the breaker: for re-checks. Resolves to
   * `unavailable` at once while the breaker refuses calls.
   */
  verifyRemote(token: string): Promise<VerifyResult>;
  breaker: Actor<CircuitBreakerMachine>;
  revocations: RevocationList;
  status(): AuthGateStatus;
  /** Called with each revocation new to this node, read from the revocations bucket. */
  onRevoked(listener: (r: Revocation) => void): void;
  /** Called each time the breaker closes again. */
  onRecovered(listener: () => void): void;
  stop(): void;
}

export async function startAuthGate(options: AuthGateOptions): Promise<AuthGate> {
  const { nc, log } = options;
  const timeoutMs = options.requestTimeoutMs ?? defaults.authRequestTimeoutMs;
  const policy = options.degradedPolicy ?? defaults.degradedPolicy;
  const revocations = new RevocationList();
  const revokedListeners: Array<(r: Revocation) => void> = [];
  const recoveredListeners: Array<() => void> = [];
  let localVerify: TokenVerifier | undefined;

  const setKeys = (jwks: JSONWebKeySet) => {
    if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) return;
    localVerify = createTokenVerifier(
      createLocalJWKSet(jwks),
      options.rules ?? defaultClaimRules,
      (c) => revocations.isRevoked(c),
      options.clockToleranceS ?? defaults.clockToleranceS,
    );
  };
  const fetchKeys = async () => {
    try {
      setKeys((await nc.request(subjects.authJwks, '', { timeout: timeoutMs })).json<JSONWebKeySet>());
    } catch {
      // The service is not answering: keep the keys we have; the next refresh tries again.
    }
  };

  const breaker = createActor(
    circuitBreakerMachine.provide({
      actors: {
        // The health probe: the cheapest request the auth service answers.
        probe: fromPromise(async () => {
          setKeys((await nc.request(subjects.authJwks, '', { timeout: timeoutMs })).json<JSONWebKeySet>());
        }),
      },
    }),
    {
      input: {
        now: options.now ?? Date.now,
        random: options.random ?? Math.random,
        options: { slowCallMs: timeoutMs, ...options.breaker },
      },
      inspect: options.observers?.inspector({ machine: 'breaker', node: options.nodeId ?? '' }, () => undefined),
    },
  );
  breaker.on('breaker.opened', (e) =>
    log.warn({ reason: e.reason, attempt: e.attempt, waitMs: e.waitMs }, 'auth breaker opened'),
  );
  breaker.on('breaker.halfOpened', (e) => log.info({ attempt: e.attempt }, 'auth breaker half-open'));
  breaker.on('breaker.closed', (e) => {
    log.info({ reason: e.reason }, 'auth breaker closed');
    for (const listener of recoveredListeners) listener();
  });
  breaker.subscribe({ error: (err) => log.error({ err }, 'auth breaker failed') });
  breaker.start();

  // Every verify request of this node, answered on one subscription (verify-requests.ts).
  const requests = new VerifyRequests(nc, timeoutMs);

  /** One auth request through the breaker, reported to it; undefined when the breaker refuses. */
  const askThroughBreaker = async (token: string): Promise<RemoteVerdict | undefined> => {
    // Never forwarded: the auth service would refuse it anyway, and it costs every node's breaker.
    if (token.length > MAX_TOKEN_LENGTH) return { result: { outcome: 'invalid', reason: 'token too long' } };
    const generation = requestTicket(breaker);
    if (generation === undefined) return undefined;
    const started = performance.now();
    const verdict = await requests.verdict(token);
    const durationMs = performance.now() - started;
    // An answer that comes after the node stopped its breaker is not reported.
    if (breaker.getSnapshot().status !== 'active') return verdict;
    if (verdict.failure === undefined) breaker.send({ type: 'call.success', durationMs, generation });
    else breaker.send({ type: 'call.failure', kind: verdict.failure, durationMs, generation });
    return verdict;
  };

  /**
   * The service's verdict, unless this node already knows the token is revoked: an auth service
   * whose watch is a moment behind this node's must not admit a token this node has seen revoked
   * (its revocation would not fire here again).
   */
  const checked = (result: VerifyResult): VerifyResult =>
    result.outcome === 'ok' && revocations.isRevoked(result.claims)
      ? { outcome: 'invalid', reason: 'token revoked' }
      : result;

  const verifyRemote = async (token: string): Promise<VerifyResult> => {
    const verdict = await askThroughBreaker(token);
    return verdict ? checked(verdict.result) : { outcome: 'unavailable', reason: 'auth breaker open' };
  };

  const verify: TokenVerifier = async (token) => {
    const verdict = await askThroughBreaker(token);
    if (verdict && verdict.failure === undefined) return checked(verdict.result);
    if (policy === 'reject' || !localVerify) {
      return { outcome: 'unavailable', reason: localVerify ? 'auth service unavailable' : 'no cached keys' };
    }
    // A node that has never read the revocations cannot tell a revoked token from a good one.
    if (!watch.known()) return { outcome: 'unavailable', reason: 'revocations not read yet' };
    const local = await localVerify(token);
    return local.outcome === 'ok' ? { ...local, degraded: true } : local;
  };

  const guard = new CallbackGuard(log);
  // Within a budget: a gateway credential can make JetStream deliver onto this subject (docs/security.md).
  const malformedKeys = limitedLog(log);
  const subs: Subscription[] = [
    nc.subscribe(subjects.authJwksAnnounce, {
      callback: guard.callback('jwks announce', (msg) => {
        try {
          setKeys(msg.json<JSONWebKeySet>());
        } catch {
          malformedKeys('info', {}, 'malformed key set announced');
        }
      }),
    }),
  ];
  const watch = watchRevocations({
    nc,
    list: revocations,
    log,
    open: () => openRevocationBucket(nc),
    keepMs: revocationMaxAgeMs({ maxTokenLifetimeS: options.rules?.maxLifetimeS }),
    onRevoked: (r) => {
      for (const listener of revokedListeners) listener(r);
    },
  });
  let waited: NodeJS.Timeout | undefined;
  await Promise.all([
    fetchKeys(),
    // Bounded: a gateway serves (through the auth service) also while the bucket cannot be read.
    Promise.race([
      watch.firstAttempt,
      new Promise((resolve) => (waited = setTimeout(resolve, options.revocationsWaitMs ?? defaults.revocationsWaitMs))),
    ]),
  ]);
  clearTimeout(waited);
  const refresh = setInterval(() => {
    if (breaker.getSnapshot().matches('closed')) void fetchKeys();
  }, options.jwksRefreshMs ?? 60_000);
  refresh.unref();

  return {
    verify,
    verifyRemote,
    breaker,
    revocations,
    status: () => {
      const snapshot = breaker.getSnapshot();
      return {
        breaker: String(snapshot.value),
        counts: { ...snapshot.context.counts },
        keysCached: localVerify !== undefined,
        revocations: revocations.size,
        revocationsWatch: watch.state(),
      };
    },
    onRevoked: (listener) => void revokedListeners.push(listener),
    onRecovered: (listener) => void recoveredListeners.push(listener),
    stop: () => {
      clearInterval(refresh);
      watch.stop();
      for (const sub of subs) sub.unsubscribe();
      requests.close();
      breaker.stop();
    },
  };
}
