/**
 * Every default of the gateway and auth options, once. The CLI's option table (src/config.ts)
 * writes them as the user would type them from here; the library entry points (`startGateway`,
 * `startAuthGate`, `startAuthService`) fall back to them. Plain values, no imports: any wing may use it.
 */
export const defaults = {
  natsUrl: 'nats://127.0.0.1:4222',
  /** CHATGATE_HOME: signing keys and NATS role credentials. */
  home: './.chatgate',
  port: 8080,
  host: '0.0.0.0',
  /** How long a new socket may take to authenticate before 4008. */
  authTimeoutMs: 5000,
  /** How long one auth check over NATS may take; also the breaker's slow-call bound. */
  authRequestTimeoutMs: 1000,
  maxMessageBytes: 65_536,
  maxBufferedBytes: 1_048_576,
  heartbeatIntervalMs: 30_000,
  /** The longest a shutdown may take, a drain included. */
  shutdownTimeoutMs: 30_000,
  /** Drain: how long /readyz says 503 while the node still serves. */
  drainGraceMs: 5000,
  /** Drain: how long the 1001 closes are spread over. */
  drainWindowMs: 10_000,
  degradedPolicy: 'local',
  recheckPerSecond: 20,
  maxConnections: 10_000,
  handshakesPerIpPerSecond: 20,
  trustProxy: 0,
  /** How long start-up waits for the revocations to be read before it serves anyway. */
  revocationsWaitMs: 5000,
  sendBytesPerSecond: 65_536,
  sendBytesBurst: 262_144,
  /**
   * Bytes all of one user's sessions on a node may send together: per second, and at once. The
   * burst stays well below `maxBufferedBytes` (1 MiB), so one user cannot fill a recipient's
   * buffer before a reader drains it, however many sessions it has.
   */
  userSendBytesPerSecond: 131_072,
  userSendBytesBurst: 524_288,
  maxStrikes: 10,
  maxSessionsPerUser: 100,
  /** DELIVERY: `ephemeral` (core NATS, at most once) or `durable` (JetStream, docs/durability.md). */
  delivery: 'durable',
  /** How long the message streams keep a message, in seconds. */
  historyMaxAgeS: 86_400,
  /** Messages kept per user inbox and per room. */
  historyMaxPerTarget: 1000,
  /** How long a send `key` deduplicates, in seconds. */
  dedupeWindowS: 120,
  /** Copies of each message stream. */
  streamReplicas: 1,
  maxSessionsPerIp: 1000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  clockToleranceS: 5,
  /** How often a gateway says it is alive (presence). */
  presenceHeartbeatMs: 2000,
  /** A gateway not heard for this long is dead: its users leave every room. */
  presenceNodeTimeoutMs: 10_000,
  /** The most users a `presence` answer lists. */
  presenceMaxUsers: 1000,
} as const;
