/**
 * The auth service (`chatgate auth`): answers auth checks on NATS request/reply in a queue group,
 * so several instances share the load, and serves its public JWK Set on NATS.
 *
 * Keys: by default the dev key pair in CHATGATE_HOME (made on first use). With `jwksUrl` it
 * verifies against an external identity provider's JWKS instead (jose fetches and caches it).
 */
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { VerifyResult } from '../machines/connection.machine.ts';
import { loadSigningKeys } from './keys.ts';
import { silentLogger, type Logger } from './log.ts';
import { AUTH_QUEUE, subjects } from './subjects.ts';
import { createTokenVerifier, defaultClaimRules, type ClaimRules } from './tokens.ts';

export interface AuthServiceOptions {
  /** NATS server URL(s). @default 'nats://127.0.0.1:4222' */
  natsUrl?: string | string[];
  /** Where the dev keys live. @default './.chatgate' */
  home?: string;
  /** An external identity provider's JWKS URL; the dev keys are not used when set. */
  jwksUrl?: string;
  rules?: ClaimRules;
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

function tokenOf(data: Uint8Array): string | undefined {
  try {
    const request = JSON.parse(new TextDecoder().decode(data)) as { token?: unknown };
    return typeof request.token === 'string' ? request.token : undefined;
  } catch {
    return undefined;
  }
}

export async function startAuthService(options: AuthServiceOptions = {}): Promise<AuthService> {
  const log = options.log ?? silentLogger;
  const { getKey, jwks } = await keySource(options);
  const verify = createTokenVerifier(getKey, options.rules ?? defaultClaimRules);
  const nc = await connect({
    servers: options.natsUrl ?? 'nats://127.0.0.1:4222',
    name: 'chatgate-auth',
    maxReconnectAttempts: -1,
  });

  const subs: Subscription[] = [];
  subs.push(
    nc.subscribe(subjects.authVerify, {
      queue: AUTH_QUEUE,
      callback: (err, msg) => {
        if (err) {
          log.error({ err }, 'auth subscription failed');
          return;
        }
        const token = tokenOf(msg.data);
        const pending: Promise<VerifyResult> =
          token === undefined
            ? Promise.resolve({ outcome: 'invalid', reason: 'malformed auth request' })
            : verify(token);
        void pending.then((verdict) => {
          if (verdict.outcome !== 'ok') log.info({ reason: verdict.reason }, 'token refused');
          msg.respond(JSON.stringify(verdict));
        });
      },
    }),
  );
  subs.push(
    nc.subscribe(subjects.authJwks, {
      queue: AUTH_QUEUE,
      callback: (_err, msg) => {
        msg.respond(JSON.stringify(jwks()));
      },
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
        if (!nc.isClosed()) await nc.drain();
        log.info('auth service stopped');
      })()),
  };
}
