/**
 * The revocations bucket: a JetStream key-value bucket (`chatgate-revocations`) that holds one
 * entry per revoked token (`jti.<base64url>`) or user (`sub.<base64url>`), its value the
 * revocation's JSON. Nothing but JetStream KV as nats-server 2.9 has it: no per-key TTL, so
 * every entry lives the bucket's `max_age`, which is the longest token lifetime verification
 * accepts plus a clock margin (the argument is in docs/resilience.md, "Revocations").
 *
 * Writes are compare-and-set on the key's revision, so two writers never lose each other's
 * revocation: a `jti` is stored once; a `sub` keeps the latest `at`.
 *
 * The auth role makes the bucket (`ensureRevocationBucket`) and writes it (`storeRevocation`);
 * gateways only open and watch it (`openRevocationBucket`, src/auth/revocation-watch.ts).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { nanos } from '@nats-io/nats-core';
import { JetStreamApiCodes, JetStreamApiError, StorageType, jetstreamManager } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import { Kvm, type KV } from '@nats-io/kv';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { covers, revocationKey, revocationSchema, type Revocation } from './revocations.ts';
import { REVOCATIONS_BUCKET } from '../subjects.ts';
import { DEFAULT_MAX_TOKEN_LIFETIME_S } from './tokens.ts';

export type { KV };

/**
 * How much longer than the longest token lifetime a revocation is kept: it covers the clock
 * leeway of verification and the clock skew between chatgate processes and the NATS servers.
 */
export const CLOCK_MARGIN_S = 900;

/** The largest value the bucket takes: a revocation's JSON is well under this. */
const MAX_VALUE_BYTES = 2048;

/**
 * The most the bucket holds, so that whoever may write it cannot fill the servers' disks: a
 * revocation's entry is well under 512 bytes, so this is far more revocations than a fleet makes
 * in a token lifetime. When full, JetStream refuses new writes (discard new): `chatgate revoke`
 * fails loudly; no stored revocation is dropped.
 */
export const REVOCATIONS_MAX_MSGS = 1_000_000;
export const REVOCATIONS_MAX_BYTES = 512 * 1024 * 1024;

/** CAS rounds before a write gives up (each lost round means another writer just wrote the key). */
const MAX_ROUNDS = 5;

export interface RevocationBucketOptions {
  /** The longest token lifetime verification accepts. @default 86400 */
  maxTokenLifetimeS?: number;
  /** Copies of the bucket: 1 on one server, 3 (or 5) on a cluster. @default 1 */
  replicas?: number;
  /** @default CLOCK_MARGIN_S (900) */
  clockMarginS?: number;
  /** Told when the bucket keeps revocations longer than these options ask (it is never shortened). */
  onLongerMaxAge?: (bucketMaxAgeMs: number, wantedMs: number) => void;
}

/** How long a revocation lives in the bucket (its `max_age`), and in each node's memory. */
export function revocationMaxAgeMs(options: RevocationBucketOptions = {}): number {
  return ((options.maxTokenLifetimeS ?? DEFAULT_MAX_TOKEN_LIFETIME_S) + (options.clockMarginS ?? CLOCK_MARGIN_S)) * 1000;
}

/** A NATS or JetStream failure, as one of our errors. */
export function revocationStoreError(err: unknown): ChatgateError {
  if (err instanceof ChatgateError) return err;
  if (
    err instanceof jserrors.JetStreamNotEnabled ||
    (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.JetStreamNotEnabledForAccount)
  ) {
    return new ChatgateError(
      ChatgateErrorCode.noJetStream,
      'JetStream is not enabled on this NATS server: revocations need it (nats-server -js, or chatgate nats)',
      { cause: err },
    );
  }
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
    return new ChatgateError(
      ChatgateErrorCode.noRevocationBucket,
      `the bucket ${REVOCATIONS_BUCKET} does not exist: an auth service makes it when it starts`,
      { cause: err },
    );
  }
  return new ChatgateError(ChatgateErrorCode.revocationStore, 'the revocations bucket did not store the revocation', {
    cause: err,
  });
}

/**
 * Makes the bucket, or opens it and raises its `max_age` to these options (never lowers it:
 * another auth service may accept longer-lived tokens, whose revocations must stay), sets its
 * replicas and bounds. For the auth role.
 */
export async function ensureRevocationBucket(nc: NatsConnection, options: RevocationBucketOptions = {}): Promise<KV> {
  try {
    const maxAgeMs = revocationMaxAgeMs(options);
    const replicas = options.replicas ?? 1;
    const kv = await new Kvm(nc).create(REVOCATIONS_BUCKET, {
      history: 1,
      ttl: maxAgeMs,
      replicas,
      storage: StorageType.File,
      maxValueSize: MAX_VALUE_BYTES,
      max_bytes: REVOCATIONS_MAX_BYTES,
      // Reads go to the stream leader, so a compare-and-set never starts from a stale copy.
      allow_direct: false,
    });
    const { config } = (await kv.status()).streamInfo;
    const maxAge = Math.max(config.max_age, nanos(maxAgeMs));
    if (config.max_age > nanos(maxAgeMs)) options.onLongerMaxAge?.(config.max_age / 1e6, maxAgeMs);
    if (
      config.max_age !== maxAge ||
      config.num_replicas !== replicas ||
      config.max_msgs !== REVOCATIONS_MAX_MSGS ||
      config.max_bytes !== REVOCATIONS_MAX_BYTES
    ) {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.update(config.name, {
        ...config,
        max_age: maxAge,
        num_replicas: replicas,
        max_msgs: REVOCATIONS_MAX_MSGS,
        max_bytes: REVOCATIONS_MAX_BYTES,
      });
    }
    return kv;
  } catch (err) {
    throw revocationStoreError(err);
  }
}

/** Opens the bucket without making it (for gateways); fails on first use if it does not exist. */
export async function openRevocationBucket(nc: NatsConnection): Promise<KV> {
  try {
    return await new Kvm(nc).open(REVOCATIONS_BUCKET, { allow_direct: false });
  } catch (err) {
    throw revocationStoreError(err);
  }
}

/** The revocation a bucket entry holds, or undefined when it holds none (deleted, unreadable, or another key's). */
export function storedRevocation(key: string, operation: string, read: () => unknown): Revocation | undefined {
  if (operation !== 'PUT') return undefined;
  let parsed;
  try {
    parsed = revocationSchema.safeParse(read());
  } catch {
    return undefined;
  }
  return parsed.success && revocationKey(parsed.data) === key ? parsed.data : undefined;
}

function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/**
 * Stores a revocation and resolves, once JetStream has acknowledged it, with the revocation the
 * bucket now holds for that key: `r`, or an earlier one that already covers it (the same jti;
 * the same user with an `at` no older). Rejects with a ChatgateError when nothing was stored.
 */
export async function storeRevocation(kv: KV, r: Revocation): Promise<Revocation> {
  const key = revocationKey(r);
  const value = JSON.stringify(r);
  try {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const entry = await kv.get(key);
      const current = entry ? storedRevocation(key, entry.operation, () => entry.json()) : undefined;
      if (current && covers(current, r)) return current;
      try {
        // Compare-and-set: only over the revision just read, or onto no value at all.
        if (entry) await kv.update(key, value, entry.revision);
        else await kv.create(key, value);
        return r;
      } catch (err) {
        // Another writer got there first: read what it wrote and decide again.
        if (!isWrongLastSequence(err)) throw err;
      }
    }
  } catch (err) {
    throw revocationStoreError(err);
  }
  throw new ChatgateError(ChatgateErrorCode.revocationStore, `key ${key} kept changing: not stored, try again`);
}
