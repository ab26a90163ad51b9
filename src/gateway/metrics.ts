/**
 * A gateway's Prometheus metrics (prom-client), one registry per node. Label values are bounded:
 * frame types, outcomes, machine states and close codes, never a user, room or session id.
 * Counts of connections per machine state are read from the actors at scrape time, not kept by
 * hand in a second place.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CloseCode } from '../../machines/codes.ts';
import { processErrorCounts } from '../last-resort.ts';

export const FRAME_TYPES_IN = ['auth', 'send', 'join', 'leave', 'refresh', 'history', 'ping', 'signal', 'presence', 'invalid', 'binary', 'too_large'] as const;
export const FRAME_TYPES_OUT = ['welcome', 'message', 'ack', 'error', 'expiring', 'pong', 'history', 'signal', 'presence', 'joined', 'left'] as const;
export const CONNECTION_STATES = ['awaiting_auth', 'authenticating', 'active', 'closing'] as const;
export const AUTH_OUTCOMES = ['ok', 'degraded', 'invalid', 'expired', 'unavailable', 'error'] as const;
const KNOWN_CLOSE_CODES = new Set<number>([...Object.values(CloseCode), 1005, 1006]);

export type ConnectionState = (typeof CONNECTION_STATES)[number];
export type AuthOutcome = (typeof AUTH_OUTCOMES)[number];

export interface MetricsSources {
  /** The machine state of every live connection, read at scrape time. */
  connectionStates(): Iterable<ConnectionState>;
  breakerState(): string;
}

export function createMetrics(sources: MetricsSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'chatgate_' });

  new Gauge({
    name: 'chatgate_connections',
    help: 'Live connection actors by machine state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>(CONNECTION_STATES.map((s) => [s, 0]));
      for (const state of sources.connectionStates()) counts.set(state, (counts.get(state) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'chatgate_auth_breaker_state',
    help: 'The auth circuit breaker state (1 for the current one)',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const current = sources.breakerState();
      for (const state of ['closed', 'open', 'halfOpen']) this.set({ state }, state === current ? 1 : 0);
    },
  });
  const breakerTransitions = new Counter({
    name: 'chatgate_auth_breaker_transitions_total',
    help: 'Auth breaker state changes, by the state entered',
    labelNames: ['to'],
    registers: [registry],
  });
  const authChecks = new Counter({
    name: 'chatgate_auth_checks_total',
    help: 'Token checks by outcome (degraded: admitted by local verification)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const authSeconds = new Histogram({
    name: 'chatgate_auth_check_seconds',
    help: 'Time to check one token, by outcome',
    labelNames: ['outcome'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const framesIn = new Counter({
    name: 'chatgate_frames_in_total',
    help: 'Frames received from clients, by type',
    labelNames: ['type'],
    registers: [registry],
  });
  const framesOut = new Counter({
    name: 'chatgate_frames_out_total',
    help: 'Frames written to clients, by type',
    labelNames: ['type'],
    registers: [registry],
  });
  const deliverySeconds = new Histogram({
    name: 'chatgate_delivery_seconds',
    help: 'From publish on the sending node to the first socket write on this node',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const closes = new Counter({
    name: 'chatgate_closes_total',
    help: 'Closed connections by close code (other: a code a client chose)',
    labelNames: ['code'],
    registers: [registry],
  });
  const slowConsumerCloses = new Counter({
    name: 'chatgate_slow_consumer_closes_total',
    help: 'Connections closed with 4009 because the socket could not keep up',
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'chatgate_rate_limited_total',
    help: 'Frames and handshakes refused by a rate limit, by kind',
    labelNames: ['kind'],
    registers: [registry],
  });
  new Counter({
    name: 'chatgate_process_errors_total',
    help: 'Errors caught by the process last resort (a bug to fix), by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      // Counted once per process by src/last-resort.ts, read here at scrape time.
      this.reset();
      for (const [kind, n] of Object.entries(processErrorCounts())) this.inc({ kind }, n);
    },
  });
  const natsReconnects = new Counter({
    name: 'chatgate_nats_reconnects_total',
    help: 'Reconnections of the node to NATS',
    registers: [registry],
  });

  // Children made once, so the hot path does no label lookup.
  const inByType = Object.fromEntries(FRAME_TYPES_IN.map((t) => [t, framesIn.labels(t)])) as Record<
    (typeof FRAME_TYPES_IN)[number],
    Counter.Internal
  >;
  const outByType = Object.fromEntries(FRAME_TYPES_OUT.map((t) => [t, framesOut.labels(t)])) as Record<
    (typeof FRAME_TYPES_OUT)[number],
    Counter.Internal
  >;

  return {
    registry,
    frameIn: (type: (typeof FRAME_TYPES_IN)[number]) => inByType[type].inc(),
    frameOut: (type: (typeof FRAME_TYPES_OUT)[number]) => outByType[type].inc(),
    delivered: (publishedAtMs: number) => deliverySeconds.observe(Math.max(0, Date.now() - publishedAtMs) / 1000),
    authChecked: (outcome: AuthOutcome, seconds: number) => {
      authChecks.inc({ outcome });
      authSeconds.observe({ outcome }, seconds);
    },
    breakerEntered: (state: 'open' | 'halfOpen' | 'closed') => breakerTransitions.inc({ to: state }),
    closed: (code: number | undefined) => {
      closes.inc({ code: code !== undefined && KNOWN_CLOSE_CODES.has(code) ? String(code) : 'other' });
      if (code === CloseCode.slowConsumer) slowConsumerCloses.inc();
    },
    rateLimited: (kind: 'send' | 'handshake' | 'connections') => rateLimited.inc({ kind }),
    natsReconnected: () => natsReconnects.inc(),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
