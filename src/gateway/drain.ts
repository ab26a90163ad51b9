/**
 * Graceful drain: how a node leaves the fleet on SIGTERM without a reconnect storm.
 *
 *   serving → grace → closing → done
 *
 * - grace (`DRAIN_GRACE_MS`, default 5000): `/readyz` answers 503 at once, so a load balancer
 *   takes the node out of rotation, while the node keeps serving everything, new upgrades too.
 * - closing (`DRAIN_WINDOW_MS`, default 10000): new upgrades get HTTP 503; the open sessions are
 *   closed with 1001 one by one, spread evenly over the window, so that their clients (which
 *   reconnect with jitter on top) arrive at the other nodes as a trickle, not all at once. Each
 *   session is closed only after the answers to its sends in flight are written: a client never
 *   loses an ack it was owed (a send that arrives after that is answered by another node after
 *   the client re-sends it, with the same key).
 * - The process exits before `SHUTDOWN_TIMEOUT_MS` (default 30000) whatever happens (cli.ts).
 *
 * The gateway calls `begin()` on SIGTERM (not on `close()`, which stays immediate for tests and
 * embedders) and reads `readyzDown` and `refusesUpgrades`.
 */
import type { Logger } from '../log.ts';
import type { Session } from './session.ts';

export interface DrainOptions {
  /** How long `/readyz` says 503 before sessions are closed. @default 5000 */
  graceMs?: number;
  /** How long the closes of the open sessions are spread over. @default 10000 */
  windowMs?: number;
  /**
   * How long one session may wait for its acks in flight before it is closed anyway: longer than
   * a durable publish may wait for its acknowledgement (5 s), so an ack that comes at all is
   * written; a bound still, for an ephemeral flush to a NATS server that hangs. @default 6000
   */
  ackWaitMs?: number;
}

export const defaultDrainOptions = Object.freeze({ graceMs: 5000, windowMs: 10_000, ackWaitMs: 6000 });

export type DrainPhase = 'serving' | 'grace' | 'closing' | 'done';

export interface Drain {
  readonly phase: DrainPhase;
  /** `/readyz` answers 503 (grace and after). */
  readonly readyzDown: boolean;
  /** New upgrades get HTTP 503 (closing and after). */
  readonly refusesUpgrades: boolean;
  /** Starts the drain; resolves when every session open at the start of `closing` was asked to close. Idempotent. */
  begin(): Promise<void>;
  /** Stops waiting (the node is closing now): whatever is left is closed by the gateway at once. */
  cancel(): void;
}

const sleep = (ms: number, timers: Set<() => void>) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      timers.delete(done);
      resolve();
    }
    timers.add(done);
  });

export function createDrain(
  sessions: ReadonlyMap<string, Session>,
  options: DrainOptions = {},
  log?: Logger,
): Drain {
  const graceMs = options.graceMs ?? defaultDrainOptions.graceMs;
  const windowMs = options.windowMs ?? defaultDrainOptions.windowMs;
  const ackWaitMs = options.ackWaitMs ?? defaultDrainOptions.ackWaitMs;
  let phase: DrainPhase = 'serving';
  let running: Promise<void> | undefined;
  /** Pending waits; `cancel()` ends them all at once. */
  const timers = new Set<() => void>();
  let cancelled = false;

  const closeOne = async (session: Session) => {
    await Promise.race([session.acksSettled(), sleep(ackWaitMs, timers)]);
    session.actor.send({ type: 'node.shutdown' });
  };

  const run = async () => {
    phase = 'grace';
    log?.info({ graceMs, windowMs, sessions: sessions.size }, 'drain started');
    await sleep(graceMs, timers);
    phase = 'closing';
    const open = [...sessions.values()];
    // Evenly spaced: the i-th of n sessions is closed at i × window / n.
    const spacing = open.length > 0 ? windowMs / open.length : 0;
    const started = Date.now();
    const closing: Promise<void>[] = [];
    for (let i = 0; i < open.length && !cancelled; i++) {
      const wait = started + i * spacing - Date.now();
      if (wait > 0) await sleep(wait, timers);
      if (cancelled) break;
      closing.push(closeOne(open[i]!));
    }
    await Promise.all(closing);
    phase = 'done';
    log?.info({ closed: open.length, ms: Date.now() - started }, 'drain closed every session');
  };

  return {
    get phase() {
      return phase;
    },
    get readyzDown() {
      return phase !== 'serving';
    },
    get refusesUpgrades() {
      return phase === 'closing' || phase === 'done';
    },
    begin: () => (running ??= run()),
    cancel() {
      cancelled = true;
      for (const done of [...timers]) done();
    },
  };
}
