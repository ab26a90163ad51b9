/**
 * Every auth service and gateway watches the revocations bucket: first every stored value, then
 * each new one, into its `RevocationList`. So a node that starts, or reconnects, later converges
 * with the rest: the watch re-reads the whole bucket each time it starts.
 *
 * The watch is started again, at once, after every NATS reconnect (the ordered consumer behind
 * it lives on one server and may be gone, or silent, after a server restart), and with backoff
 * after any failure: a NATS server without JetStream, a bucket that does not exist yet, a
 * JetStream still recovering. One log line per change of state, never one per retry.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { KV, KvWatchEntry } from '@nats-io/kv';
import { ChatgateErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { RevocationList, type Revocation } from './revocations.ts';
import { revocationStoreError, storedRevocation } from './revocation-store.ts';
import { decodeId } from '../subjects.ts';
import { limitedLog } from '../bounded-log.ts';

/**
 * - `starting`: the first attempt is under way.
 * - `watching`: the watch runs.
 * - `noJetStream` / `noBucket`: nothing can have been revoked in this NATS (yet); retrying.
 * - `failing`: the bucket cannot be read (NATS down, JetStream recovering); retrying.
 */
export type RevocationWatchState = 'starting' | 'watching' | 'noJetStream' | 'noBucket' | 'failing' | 'stopped';

export interface RevocationWatchOptions {
  nc: NatsConnection;
  list: RevocationList;
  log: Logger;
  /** Opens the bucket (gateways) or makes it (the auth service). */
  open: () => Promise<KV>;
  /** How long after it was stored this node keeps a revocation: longest token lifetime plus margin. */
  keepMs: number;
  /** Called with each revocation new to this node, after it is in the list. */
  onRevoked?: (r: Revocation) => void;
  /** The first retry delay; each next one doubles, up to `retryMaxMs`. @default 200 */
  retryMinMs?: number;
  /** @default 2000 */
  retryMaxMs?: number;
  now?: () => number;
}

export interface RevocationWatch {
  state(): RevocationWatchState;
  /**
   * True once every stored revocation has been read at least once, or when none can exist (no
   * JetStream, no bucket): until then a node cannot tell a revoked token from a good one alone.
   */
  known(): boolean;
  /** Resolves when the first attempt has read the bucket, or failed. */
  readonly firstAttempt: Promise<void>;
  stop(): void;
}

/** The revocation a deleted key named, so that it can be forgotten. */
function fromKey(key: string): Pick<Revocation, 'jti' | 'sub'> | undefined {
  const [kind, encoded] = key.split('.');
  if (encoded === undefined) return undefined;
  if (kind === 'jti') return { jti: decodeId(encoded) };
  if (kind === 'sub') return { sub: decodeId(encoded) };
  return undefined;
}

export function watchRevocations(options: RevocationWatchOptions): RevocationWatch {
  const { nc, list, log, open, keepMs } = options;
  const now = options.now ?? Date.now;
  const retryMinMs = options.retryMinMs ?? 200;
  const retryMaxMs = options.retryMaxMs ?? 2000;
  let state: RevocationWatchState = 'starting';
  let loaded = false;
  let stopped = false;
  let restart = false;
  let current: { stop(): void } | undefined;
  let wake: (() => void) | undefined;
  let firstDone!: () => void;
  const firstAttempt = new Promise<void>((resolve) => (firstDone = resolve));
  // Within a budget: whoever may write the bucket could fill it with junk, read again at each start.
  const unreadable = limitedLog(log);
  let warnedShortAge = false;

  const enter = (next: RevocationWatchState, err?: unknown) => {
    if (next === state) return;
    state = next;
    if (next === 'watching') log.info('revocations watched');
    else if (next !== 'stopped') log.warn({ state: next, err }, 'revocations unavailable');
  };

  const take = (e: KvWatchEntry) => {
    const r = storedRevocation(e.key, e.operation, () => e.json());
    if (r === undefined) {
      const named = e.operation === 'PUT' ? undefined : fromKey(e.key);
      if (named) list.remove(named);
      else unreadable('warn', { key: e.key.slice(0, 80) }, 'unreadable revocation in bucket');
      return;
    }
    const until = e.created.getTime() + keepMs;
    // Past its time: no token it covers can be accepted any more.
    if (until <= now()) return;
    if (list.add(r, until)) options.onRevoked?.(r);
  };

  const markLoaded = () => {
    loaded = true;
    firstDone();
  };

  const watchOnce = async () => {
    const kv = await open();
    const iter = await kv.watch({ key: '>' });
    current = iter;
    try {
      // An empty bucket delivers nothing: it is read once there is nothing to read.
      const status = await kv.status();
      if (status.values === 0) markLoaded();
      // The bucket drops a revocation after its max_age: shorter than this node's lifetime plus
      // margin, a token this node accepts may outlive its revocation (docs/resilience.md).
      if (status.ttl > 0 && status.ttl < keepMs && !warnedShortAge) {
        warnedShortAge = true;
        log.warn({ bucketMaxAgeMs: status.ttl, neededMs: keepMs }, 'revocations bucket keeps revocations shorter than this node needs');
      }
      enter('watching');
      for await (const e of iter) {
        take(e);
        // `delta` counts what the consumer has still to deliver: 0 is the end of the stored values.
        if (e.delta === 0) markLoaded();
      }
    } finally {
      iter.stop();
      current = undefined;
    }
  };

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  void (async () => {
    let failures = 0;
    while (!stopped) {
      try {
        await watchOnce();
        failures = 0;
      } catch (err) {
        const { code, message } = revocationStoreError(err);
        const next =
          code === ChatgateErrorCode.noJetStream ? 'noJetStream' : code === ChatgateErrorCode.noRevocationBucket ? 'noBucket' : 'failing';
        enter(next, { code, message });
        failures += 1;
      }
      firstDone();
      if (stopped) break;
      if (restart) {
        restart = false;
        continue;
      }
      await pause(Math.min(retryMaxMs, retryMinMs * 2 ** Math.max(0, failures - 1)));
    }
  })();

  // After a reconnect the old consumer may be gone or silent: read the bucket again, at once.
  // nats.js's status iterator ends when asked to return (its `stop`).
  const statuses = nc.status()[Symbol.asyncIterator]();
  void (async () => {
    for await (const s of { [Symbol.asyncIterator]: () => statuses }) {
      if (s.type !== 'reconnect' || stopped) continue;
      restart = true;
      current?.stop();
      wake?.();
    }
  })();

  const prune = setInterval(() => list.prune(now()), Math.min(60_000, keepMs));
  prune.unref();

  return {
    state: () => state,
    known: () => loaded || state === 'noJetStream' || state === 'noBucket',
    firstAttempt,
    stop: () => {
      if (stopped) return;
      stopped = true;
      enter('stopped');
      clearInterval(prune);
      void statuses.return?.();
      current?.stop();
      wake?.();
    },
  };
}
