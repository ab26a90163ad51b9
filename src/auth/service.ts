/**
 * The auth service (`chatgate auth`): answers auth checks on NATS request/reply in a queue group,
 * so several instances share the load, and serves its public JWK Set on NATS.
 *
 * Keys: by default the dev key pair in CHATGATE_HOME (made on first use). With `jwksUrl` it
 * verifies against an external identity provider's JWKS instead (jose fetches and caches it).
 *
 * Revocations: it makes the revocations bucket (src/auth/revocation-store.ts), answers `auth.revoke`
 * once JetStream has stored the revocation, and watches the bucket like every gateway does.
 */
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import type { VerifyResult } from '../../machines/connection.machine.ts';
import { loadSigningKeys } from './keys.ts';
import { defaults } from '../defaults.ts';
import { closeNats, connectNats, type NatsCredentials } from '../bus/connection.ts';
import { silentLogger, type Logger } from '../log.ts';
import { AUTH_QUEUE, subjects } from '../subjects.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';
import { isAskerInbox } from '../bus/permissions.ts';
import { limitedLog } from '../bounded-log.ts';
import { createTokenVerifier, defaultClaimRules, type ClaimRules } from './tokens.ts';
import { loadRevocations, retireLegacyFile, RevocationList, revocationSchema, type Revocation } from './revocations.ts';
import {
  ensureRevocationBucket,
  revocationMaxAgeMs,
  revocationStoreError,
  storeRevocation,
  type KV,
} from './revocation-store.ts';
import { watchRevocations } from './revocation-watch.ts';
import { ChatgateErrorCode } from '../errors.ts';

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
  /** Copies of the revocations bucket when this service makes it: 3 (or 5) on a cluster. @default 1 */
  revocationReplicas?: number;
  /** How much longer than the longest token lifetime revocations are kept. @default 900 */
  clockMarginS?: number;
  /** How long start-up waits for the revocations to be read before it serves anyway. @default 5000 */
  revocationsWaitMs?: number;
  log?: Logger;
}

export interface AuthService {
  nc: NatsConnection;
  /** The revocations this service knows of. */
  revocations: RevocationList;
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
  const keys = await loadSigningKeys(options.home ?? defaults.home);
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
  const home = options.home ?? defaults.home;
  const { getKey, jwks } = await keySource(options);
  const rules = options.rules ?? defaultClaimRules;
  const bucketOptions = {
    maxTokenLifetimeS: rules.maxLifetimeS,
    replicas: options.revocationReplicas,
    clockMarginS: options.clockMarginS,
    onLongerMaxAge: (bucketMaxAgeMs: number, wantedMs: number) =>
      log.warn({ bucketMaxAgeMs, wantedMs }, 'revocations bucket keeps revocations longer than this service’s setting: left as it is'),
  };
  const keepMs = revocationMaxAgeMs(bucketOptions);
  const revocations = new RevocationList();
  // The file revocations lived in before the bucket: refused from now on, imported once below.
  const legacy = await loadRevocations(home);
  if (legacy.skipped > 0) log.warn({ skipped: legacy.skipped }, 'unreadable revocation lines skipped');
  for (const r of legacy.revocations) revocations.add(r, Date.now() + keepMs);
  const verify = createTokenVerifier(
    getKey,
    rules,
    (claims) => revocations.isRevoked(claims),
    options.clockToleranceS ?? defaults.clockToleranceS,
  );
  const nc = await connectNats(options.natsUrl ?? defaults.natsUrl, 'chatgate-auth', {
    role: 'auth',
    home,
    credentials: options.natsCredentials,
  });
  const guard = new CallbackGuard(log);
  const foreignReply = limitedLog(log);
  // Each budgeted: a flood of bad tokens or requests must not flood the log.
  const tokenRefused = limitedLog(log);
  const malformedRevoke = limitedLog(log);
  const revocationNotStored = limitedLog(log);
  /**
   * Answers only on an asker's inbox: a reply subject is the asker's choice, and the auth role may
   * write revocations, so an answer on `$KV.…` would be a write in its name (docs/security.md).
   */
  const answerable = (msg: Msg, what: string): boolean => {
    if (msg.reply !== undefined && isAskerInbox(msg.reply)) return true;
    foreignReply('warn', { what, reply: msg.reply?.slice(0, 64) }, 'reply subject refused');
    return false;
  };

  /**
   * The bucket, made (or brought to these options) once, by one caller at a time (the watch and
   * a revoke request may both ask); the old file imported into it once.
   */
  let bucket: Promise<KV> | undefined;
  const openBucket = () =>
    (bucket ??= (async () => {
      const kv = await ensureRevocationBucket(nc, bucketOptions);
      if (legacy.revocations.length > 0) {
        for (const r of legacy.revocations) await storeRevocation(kv, r);
        await retireLegacyFile(home);
        log.info({ imported: legacy.revocations.length }, 'revocations imported from revocations.jsonl');
        legacy.revocations.length = 0;
      }
      return kv;
    })().catch((err: unknown) => {
      bucket = undefined;
      throw err;
    }));
  const watch = watchRevocations({ nc, list: revocations, log, open: openBucket, keepMs });
  // Serve only once the stored revocations are read (bounded: no JetStream is also an answer).
  let waited: NodeJS.Timeout | undefined;
  await Promise.race([
    watch.firstAttempt,
    new Promise((resolve) => (waited = setTimeout(resolve, options.revocationsWaitMs ?? defaults.revocationsWaitMs))),
  ]);
  clearTimeout(waited);

  const subs: Subscription[] = [];
  subs.push(
    nc.subscribe(subjects.authVerify, {
      queue: AUTH_QUEUE,
      callback: guard.callback('verify', (msg) => {
        if (!answerable(msg, 'verify')) return;
        const token = tokenOf(msg.data);
        const pending: Promise<VerifyResult> =
          token === undefined
            ? Promise.resolve({ outcome: 'invalid', reason: 'malformed auth request' })
            : verify(token);
        return pending.then((verdict) => {
          if (verdict.outcome !== 'ok') tokenRefused('info', { reason: verdict.reason }, 'token refused');
          msg.respond(JSON.stringify(verdict));
        });
      }),
    }),
  );
  subs.push(
    nc.subscribe(subjects.authJwks, {
      queue: AUTH_QUEUE,
      callback: guard.callback('jwks', (msg) => {
        if (!answerable(msg, 'jwks')) return;
        msg.respond(JSON.stringify(jwks()));
      }),
    }),
  );
  /**
   * Stores a revocation in the bucket and resolves once JetStream acknowledged it, with what the
   * bucket holds for it. Nothing in memory short-cuts it: a retry after a failure stores again.
   */
  const record = async (r: Revocation): Promise<Revocation> => {
    let stored: Revocation;
    try {
      stored = await storeRevocation(await openBucket(), r);
    } catch (err) {
      // Deleted under us: make it again, once.
      if (revocationStoreError(err).code !== ChatgateErrorCode.noRevocationBucket) throw err;
      bucket = undefined;
      stored = await storeRevocation(await openBucket(), r);
    }
    revocations.add(stored, Date.now() + keepMs);
    log.info({ jti: stored.jti, sub: stored.sub, at: stored.at }, 'token revoked');
    return stored;
  };
  subs.push(
    nc.subscribe(subjects.authRevoke, {
      queue: AUTH_QUEUE,
      callback: guard.callback('revoke', (msg) => {
        if (!answerable(msg, 'revoke')) return;
        // The revocation covers tokens issued until the operator asked (`at`), never later: a
        // request held up by an outage must not revoke tokens issued after it.
        const request = safeJson(msg.data) as { at?: unknown } | undefined;
        const now = Math.floor(Date.now() / 1000);
        const at = typeof request?.at === 'number' && request.at <= now ? request.at : now;
        const parsed = revocationSchema.safeParse({ ...request, at });
        if (!parsed.success) {
          malformedRevoke('info', {}, 'malformed revoke request');
          msg.respond(JSON.stringify({ ok: false, error: 'give exactly one of jti and sub' }));
          return;
        }
        return record(parsed.data).then(
          (revocation) => msg.respond(JSON.stringify({ ok: true, revocation })),
          (err: unknown) => {
            const { code, message } = revocationStoreError(err);
            revocationNotStored('error', { code, err: message }, 'revocation not stored');
            msg.respond(JSON.stringify({ ok: false, code, error: `revocation not stored: ${message}` }));
          },
        );
      }),
    }),
  );
  nc.publish(subjects.authJwksAnnounce, JSON.stringify(jwks()));
  await nc.flush();
  log.info({ server: nc.getServer(), external: Boolean(options.jwksUrl) }, 'auth service ready');

  let closing: Promise<void> | undefined;
  return {
    nc,
    revocations,
    close: () =>
      (closing ??= (async () => {
        watch.stop();
        await closeNats(nc);
        log.info('auth service stopped');
      })()),
  };
}
