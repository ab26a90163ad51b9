/**
 * The auth service (`chatgate auth`): answers auth checks on NATS request/reply in a queue group,
 * so several instances share the load, and serves its public JWK Set on NATS.
 *
 * Keys: by default the dev key pair in CHATGATE_HOME (made on first use). With `jwksUrl` it
 * verifies against an external identity provider's JWKS instead (jose fetches and caches it).
 */
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import type { VerifyResult } from '../../machines/connection.machine.ts';
import { loadSigningKeys } from './keys.ts';
import { limitDefaults } from '../config.ts';
import { closeNats, connectNats, type NatsCredentials } from '../bus/connection.ts';
import { silentLogger, type Logger } from '../log.ts';
import { AUTH_QUEUE, subjects } from '../subjects.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';
import { createTokenVerifier, defaultClaimRules, type ClaimRules } from './tokens.ts';
import { loadRevocations, persistRevocation, revocationSchema, type Revocation } from './revocations.ts';

export interface AuthServiceOptions {
  /** NATS server URL(s). @default 'nats://127.0.0.1:4222' */
  natsUrl?: string | string[];
  /** Where the dev keys live. @default './.chatgate' */
  home?: string;
  /** An external identity provider's JWKS URL; the dev keys are not used when set. */
  jwksUrl?: string;
  rules?: ClaimRules;
  /** Clock skew allowed for `exp` and `nbf`, in seconds. @default 5 */
  clockToleranceS?: number;
  /** Explicit NATS credentials; without them, the auth role's credential in `home`, if any. */
  natsCredentials?: NatsCredentials;
  log?: Logger;
}

export interface AuthService {
  nc: NatsConnection;
  /** Drains the subscriptions and closes the NATS connection. Safe to call twice. */
  close(): Promise<void>;
}

async function keySource(options: AuthServiceOptions): Promise<{
  getKey: JWTVerifyGetKey;
  jwks: () => JSONWebKeySet;
}> {
  if (options.jwksUrl) {
    const remote = createRemoteJWKSet(new URL(options.jwksUrl));
    return { getKey: remote, jwks: () => remote.jwks() ?? { keys: [] } };
  }
  const keys = await loadSigningKeys(options.home ?? './.chatgate');
  return { getKey: createLocalJWKSet(keys.jwks), jwks: () => keys.jwks };
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

function tokenOf(data: Uint8Array): string | undefined {
  const token = (safeJson(data) as { token?: unknown } | undefined)?.token;
  return typeof token === 'string' ? token : undefined;
}

export async function startAuthService(options: AuthServiceOptions = {}): Promise<AuthService> {
  const log = options.log ?? silentLogger;
  const home = options.home ?? './.chatgate';
  const { getKey, jwks } = await keySource(options);
  const { list: revocations, skipped } = await loadRevocations(home);
  if (skipped > 0) log.warn({ skipped }, 'unreadable revocation lines skipped');
  const verify = createTokenVerifier(
    getKey,
    options.rules ?? defaultClaimRules,
    (claims) => revocations.isRevoked(claims),
    options.clockToleranceS ?? limitDefaults.clockToleranceS,
  );
  const nc = await connectNats(options.natsUrl ?? 'nats://127.0.0.1:4222', 'chatgate-auth', {
    role: 'auth',
    home,
    credentials: options.natsCredentials,
  });

  const guard = new CallbackGuard(log);
  const subs: Subscription[] = [];
  subs.push(
    nc.subscribe(subjects.authVerify, {
      queue: AUTH_QUEUE,
      callback: guard.callback('verify', (msg) => {
        const token = tokenOf(msg.data);
        const pending: Promise<VerifyResult> =
          token === undefined
            ? Promise.resolve({ outcome: 'invalid', reason: 'malformed auth request' })
            : verify(token);
        return pending.then((verdict) => {
          if (verdict.outcome !== 'ok') log.info({ reason: verdict.reason }, 'token refused');
          msg.respond(JSON.stringify(verdict));
        });
      }),
    }),
  );
  subs.push(
    nc.subscribe(subjects.authJwks, {
      queue: AUTH_QUEUE,
      callback: guard.callback('jwks', (msg) => {
        msg.respond(JSON.stringify(jwks()));
      }),
    }),
  );
  /** Records a revocation once: in memory, then on disk. */
  const record = async (r: Revocation) => {
    if (!revocations.add(r)) return false;
    await persistRevocation(home, r);
    log.info({ jti: r.jti, sub: r.sub, at: r.at }, 'token revoked');
    return true;
  };
  subs.push(
    nc.subscribe(subjects.authRevoke, {
      queue: AUTH_QUEUE,
      callback: guard.callback('revoke', (msg) => {
        // The revocation covers tokens issued until the operator asked (`at`), never later: a
        // request held up by an outage must not revoke tokens issued after it.
        const request = safeJson(msg.data) as { at?: unknown } | undefined;
        const now = Math.floor(Date.now() / 1000);
        const at = typeof request?.at === 'number' && request.at <= now ? request.at : now;
        const parsed = revocationSchema.safeParse({ ...request, at });
        if (!parsed.success) {
          log.info('malformed revoke request');
          msg.respond(JSON.stringify({ ok: false, error: 'give exactly one of jti and sub' }));
          return;
        }
        return record(parsed.data).then(
          () => {
            nc.publish(subjects.revoked, JSON.stringify(parsed.data));
            msg.respond(JSON.stringify({ ok: true, revocation: parsed.data }));
          },
          (err: unknown) => {
            log.error({ err }, 'revocation not persisted');
            msg.respond(JSON.stringify({ ok: false, error: 'revocation not persisted' }));
          },
        );
      }),
    }),
  );
  // Revocations recorded by other auth services, or broadcast while none could answer.
  subs.push(
    nc.subscribe(subjects.revoked, {
      callback: guard.callback('revoked', (msg) => {
        const parsed = revocationSchema.safeParse(safeJson(msg.data));
        if (!parsed.success) return log.info('malformed revocation broadcast');
        record(parsed.data).catch((err: unknown) => log.error({ err }, 'revocation not persisted'));
      }),
    }),
  );
  nc.publish(subjects.authJwksAnnounce, JSON.stringify(jwks()));
  await nc.flush();
  log.info({ server: nc.getServer(), external: Boolean(options.jwksUrl) }, 'auth service ready');

  let closing: Promise<void> | undefined;
  return {
    nc,
    close: () =>
      (closing ??= (async () => {
        await closeNats(nc);
        log.info('auth service stopped');
      })()),
  };
}
