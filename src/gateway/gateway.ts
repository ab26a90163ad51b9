/**
 * A gateway node (`chatgate gateway`): an HTTP server whose `/ws` path upgrades to WebSocket, one
 * connection actor per socket, and one NATS connection shared by all of them. `startGateway` is
 * wiring; each part has its module:
 *
 *   upgrade.ts    which upgrade requests become sessions (path, origin, rates, per-IP, draining)
 *   session.ts    one socket and its connection actor, and the effects the machine names
 *   sessions.ts   the node's sessions map: heartbeat, revocations, drain at shutdown
 *   relay.ts      a message heard on NATS, written to the local member sessions
 *   ../durable/   DELIVERY=durable: streams, positions, resume, history, publishChat
 *   interest.ts   which NATS subjects this node is subscribed to, for whom
 *   degraded.ts   sessions admitted without the auth service, and their re-check
 *   publish.ts    the one publish path of chat messages (a session's send, the publish API) and signals
 *   presence.ts   who is in which room fleet-wide, and the joined/left events
 *   publish-api.ts  the server-side publish API (NATS request and POST /api/publish)
 *   ops-http.ts   the node's HTTP server: /healthz, /readyz, /metrics
 */
import { hostname } from 'node:os';
import { nuid, type NatsConnection } from '@nats-io/nats-core';
import { defaultConnectionLimits, type ConnectionLimits } from '../../machines/connection.machine.ts';
import { startAuthGate, type AuthGate, type AuthGateStatus, type DegradedPolicy } from '../auth/gate.ts';
import type { BreakerOptions } from '../../machines/circuit-breaker.machine.ts';
import type { ClaimRules } from '../auth/tokens.ts';
import { createDegradedSessions, type DegradedSessions } from './degraded.ts';
import { createMetrics, type AuthOutcome, type ConnectionState, type Metrics } from './metrics.ts';
import { createNodeServer } from './ops-http.ts';
import { closeNats, connectNats, type NatsCredentials } from '../bus/connection.ts';
import { limitedLog } from '../bounded-log.ts';
import type { ConnectionActor } from './session.ts';
import { Interest } from './interest.ts';
import { createSignalPublisher } from './signals.ts';
import { CONTROL_MARK, Presence } from './presence.ts';
import { servePublishApi, type PublishApiOptions } from './publish-api.ts';
import { Delivery } from '../durable/delivery.ts';
import type { ChatMessage, DeliveryMode, Published } from '../durable/publish.ts';
import type { StreamOptions } from '../durable/streams.ts';
import { createUpgrades } from './upgrade.ts';
import { closeRevoked, drainSessions, startHeartbeat } from './sessions.ts';
import { silentLogger, type Logger } from '../log.ts';
import { Observers } from '../observe/observe.ts';
import { startRecorder, type RecordingOptions } from '../observe/recording.ts';
import { UserSendBudget } from './user-send-budget.ts';
import { connectionLogic, inspectSessions, openSession, sessionEnded, type NodeContext, type Session } from './session.ts';
import { ActorShards } from './actor-shards.ts';
import { TimerQueue } from './timer-queue.ts';
import { MAX_TOKEN_LENGTH, type TokenVerifier } from '../auth/tokens.ts';
import { defaults } from '../defaults.ts';
import { createDrain } from './drain.ts';
import { listen } from '../http.ts';

export { SUBPROTOCOL, upgradeToken, trustedHops, clientAddress } from './upgrade.ts';

export interface GatewayOptions {
  /** NATS server URL(s). @default 'nats://127.0.0.1:4222' */
  natsUrl?: string | string[];
  /** CHATGATE_HOME: the gateway role's NATS credential there is used when `natsCredentials` gives none. */
  natsHome?: string;
  /** Explicit NATS credentials (NATS_CREDS, NATS_USER, …). @default none */
  natsCredentials?: NatsCredentials;
  /** HTTP port; 0 picks a free one. @default 8080 */
  port?: number;
  /** @default '0.0.0.0' */
  host?: string;
  /** This node's name in logs and `welcome`. @default `<hostname>-<random>` */
  nodeId?: string;
  /** How long a new socket may take to authenticate before 4008. @default 5000 */
  authTimeoutMs?: number;
  /** How long one auth check over NATS may take; also the breaker's slow-call bound. @default 1000 */
  authRequestTimeoutMs?: number;
  /** When the auth service cannot be asked: verify locally (`degraded: true`) or close with 1013. @default 'local' */
  degradedPolicy?: DegradedPolicy;
  /** Issuer and audience for local verification. @default { issuer: 'chatgate', audience: 'chatgate' } */
  rules?: ClaimRules;
  /** The auth breaker's thresholds; see machines/circuit-breaker.machine.ts for the defaults. */
  breaker?: Partial<BreakerOptions>;
  /** Degraded sessions re-checked per second after the auth service is back. @default 20 */
  recheckPerSecond?: number;
  /** Largest client frame; larger ones close with 1009. @default 65536 */
  maxMessageBytes?: number;
  /** Outgoing bytes a socket may hold; more closes with 4009. @default 1048576 */
  maxBufferedBytes?: number;
  /** When set, upgrades from any other Origin get HTTP 403. */
  allowedOrigins?: readonly string[];
  /** How often sockets are pinged; one missed pong ends the session. @default 30000 */
  heartbeatIntervalMs?: number;
  /** How long a shutdown may take in all (a drain included); sockets still open then are cut. @default 30000 */
  shutdownTimeoutMs?: number;
  /** Drain (SIGTERM): how long /readyz says 503 while the node still serves. @default 5000 */
  drainGraceMs?: number;
  /** Drain (SIGTERM): how long the 1001 closes of open sessions are spread over. @default 10000 */
  drainWindowMs?: number;
  limits?: Partial<ConnectionLimits>;
  /** Connections this node accepts; more are accepted and closed with 1013. @default 10000 */
  maxConnections?: number;
  /** WebSocket handshakes per second from one IP; more get HTTP 429. @default 20 */
  handshakesPerIpPerSecond?: number;
  /**
   * Proxies in front of the node whose X-Forwarded-For entries are trusted: the client address is
   * the entry that many places from the right (`true` = 1, `false` = 0: the socket's address). @default 0
   */
  trustProxy?: number | boolean;
  /** Sessions one user may have on this node; one more closes with 1013 once authenticated. @default 100 */
  maxSessionsPerUser?: number;
  /** Bytes of `send` frames all of one user's sessions on this node may send per second. @default 131072 */
  userSendBytesPerSecond?: number;
  /** Bytes of `send` frames all of one user's sessions on this node may send at once. @default 524288 */
  userSendBytesBurst?: number;
  /** Sessions one client address may have on this node; one more upgrade gets HTTP 429. @default 1000 */
  maxSessionsPerIp?: number;
  /** How long a request (an upgrade too) may take to send its headers; then HTTP 408 and close. @default 10000 */
  headersTimeoutMs?: number;
  /** How long a plain HTTP request may take in all. @default 30000 */
  requestTimeoutMs?: number;
  /** Clock skew allowed for `exp` and `nbf`, in seconds: local checks, and how long after `exp` a session closes. @default 5 */
  clockToleranceS?: number;
  /** When set, GET /metrics needs `Authorization: Bearer <token>`. */
  metricsToken?: string;
  /** Presence: heartbeat interval, and the silence after which a node counts as dead. @default 2000 / 10000 */
  presenceHeartbeatMs?: number;
  presenceNodeTimeoutMs?: number;
  /** The most users a `presence` answer lists. @default 1000 */
  presenceMaxUsers?: number;
  /** When set, `POST /api/publish` on this port takes `Authorization: Bearer <apiToken>`; unset, it is 404. */
  apiToken?: string;
  /** Checks tokens; the auth service over NATS by default. */
  verify?: TokenVerifier;
  /** Where the actors report what they live through (inspector page, recorder). @default a new one */
  observers?: Observers;
  /** Record what the connection actors (all, one user's or one session's) and the breaker receive; see src/observe/recording.ts. @default off */
  recording?: RecordingOptions;
  /**
   * `durable`: every chat message is stored in JetStream before its ack (positions, resume,
   * history, keys; see docs/durability.md); `ephemeral`: core NATS, at most once. @default 'ephemeral'
   */
  delivery?: DeliveryMode;
  /** Retention, dedupe window and replicas of the message streams, used when they are made. */
  history?: StreamOptions;
  log?: Logger;
}

export interface Gateway {
  nodeId: string;
  /** The HTTP port actually bound. */
  port: number;
  /** `ws://host:port/ws`. */
  url: string;
  nc: NatsConnection;
  sessions: ReadonlyMap<string, Session>;
  /** The auth breaker and key cache of this node. */
  auth: AuthGate;
  authStatus(): AuthGateStatus;
  /** Subjects this node is subscribed to for its sessions. */
  interest: Pick<Interest<Session>, 'size' | 'has'>;
  /** What the connection actors live through, for whoever listens (the inspector page). */
  observers: Observers;
  /**
   * Graceful drain (src/gateway/drain.ts), what SIGTERM does before `close()`: /readyz 503 for
   * `drainGraceMs`, then upgrades refused with 503 and sessions closed with 1001 over `drainWindowMs`.
   */
  drain(): Promise<void>;
  /**
   * Publishes one chat message exactly as a session's `send` does (durable: stored before it
   * resolves, with `pos`; a `key` dedupes per `from` user), without a session: for server-side
   * publishing. `from` must be a verified user id; the caller checks that it may send.
   */
  publishChat(message: ChatMessage): Promise<Published>;
  /** Stops accepting, closes every session with 1001, drains NATS. Idempotent and bounded. */
  close(): Promise<void>;
}

/** The label of a connection's machine state in metrics. */
function connectionState(actor: ConnectionActor): ConnectionState {
  const snapshot = actor.getSnapshot();
  if (snapshot.matches({ open: 'active' })) return 'active';
  if (snapshot.matches({ open: 'authenticating' })) return 'authenticating';
  if (snapshot.matches({ open: 'awaitingAuth' })) return 'awaiting_auth';
  return 'closing';
}

/**
 * The verifier sessions use: a token over the size limit is refused before anything asks the auth
 * service (on every path a token comes by); each check is counted in metrics, and a degraded
 * admission is reported to the re-check schedule.
 */
function checkedVerify(verify: TokenVerifier, metrics: Metrics, degraded: DegradedSessions): TokenVerifier {
  return async (token) => {
    if (token.length > MAX_TOKEN_LENGTH) return { outcome: 'invalid', reason: 'token too long' };
    const started = performance.now();
    let outcome: AuthOutcome = 'error';
    try {
      const result = await verify(token);
      outcome = result.outcome === 'ok' ? (result.degraded ? 'degraded' : 'ok') : result.outcome;
      if (outcome === 'degraded') degraded.admittedLocally();
      return result;
    } finally {
      metrics.authChecked(outcome, (performance.now() - started) / 1000);
    }
  };
}

/** The node's NATS connection state, for readiness and the reconnect counter. */
function watchNats(nc: NatsConnection, metrics: Metrics, log: Logger, reconnected: () => void): () => boolean {
  let natsConnected = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') natsConnected = false;
      if (status.type === 'reconnect') {
        natsConnected = true;
        metrics.natsReconnected();
        log.warn({ server: nc.getServer() }, 'nats reconnected');
        reconnected();
      }
    }
  })();
  return () => natsConnected;
}

export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const nodeId = options.nodeId ?? `${hostname()}-${nuid.next().slice(-6)}`;
  const clockToleranceS = options.clockToleranceS ?? defaults.clockToleranceS;
  const log = (options.log ?? silentLogger).child({ node: nodeId });
  const nc = await connectNats(options.natsUrl ?? defaults.natsUrl, `chatgate-gateway-${nodeId}`, {
    role: 'gateway',
    home: options.natsHome,
    credentials: options.natsCredentials,
  });

  // Made before the breaker starts, so that a recording has it from its first state.
  const observers = options.observers ?? new Observers({ log });
  const recorder = options.recording
    ? await startRecorder(observers, options.recording, { node: nodeId, nc, log }).catch(async (err: unknown) => {
        await closeNats(nc);
        throw err;
      })
    : undefined;
  const auth = await startAuthGate({
    nc,
    log,
    observers,
    nodeId,
    requestTimeoutMs: options.authRequestTimeoutMs,
    degradedPolicy: options.degradedPolicy,
    rules: options.rules,
    clockToleranceS,
    breaker: options.breaker,
  });
  recorder?.describe(auth.breaker);
  const sessions = new Map<string, Session>();
  const metrics = createMetrics({
    connectionStates: () => [...sessions.values()].map((s) => connectionState(s.actor)),
    breakerState: () => auth.status().breaker,
  });
  auth.breaker.on('breaker.opened', () => metrics.breakerEntered('open'));
  auth.breaker.on('breaker.halfOpened', () => metrics.breakerEntered('halfOpen'));
  auth.breaker.on('breaker.closed', () => metrics.breakerEntered('closed'));

  // Live messages go through delivery (gap detection and `pos` when durable), then relay.ts. A
  // presence control line (first byte `!`) goes to presence instead, before any decoding.
  let delivery: Delivery | undefined;
  const interest: Interest<Session> = new Interest<Session>(
    nc,
    (_members, data, subject, msg) => {
      if (data[0] === CONTROL_MARK) presence.onRoomControl(subject, data);
      else delivery?.live(subject, msg);
    },
    log,
    (subject) => delivery?.released(subject),
  );
  const presence = new Presence({
    nc,
    nodeId,
    log,
    heartbeatMs: options.presenceHeartbeatMs,
    nodeTimeoutMs: options.presenceNodeTimeoutMs,
    maxUsers: options.presenceMaxUsers,
    broadcast: (subject, frame, type) => {
      for (const session of interest.members(subject) ?? []) session.write(frame, type);
    },
  });
  try {
    delivery = await Delivery.start({
      nc,
      mode: options.delivery ?? defaults.delivery,
      history: options.history,
      flush: () => interest.flush(),
      members: (subject) => interest.members(subject),
      delivered: (ts) => metrics.delivered(ts),
      log,
    });
    await presence.start();
  } catch (err) {
    presence.stop();
    auth.stop();
    await recorder?.close();
    await closeNats(nc);
    throw err;
  }
  const signals = createSignalPublisher(nc, () => interest.flush());
  const publishApi: PublishApiOptions = {
    publish: (message) => delivery.publish(undefined, message),
    log,
    maxBytes: options.maxMessageBytes ?? defaults.maxMessageBytes,
    apiToken: options.apiToken,
  };
  const publishApiSub = servePublishApi(nc, publishApi);
  const degraded = createDegradedSessions({
    sessions,
    auth,
    perSecond: options.recheckPerSecond ?? defaults.recheckPerSecond,
    log,
  });
  const node: NodeContext = {
    nodeId,
    nc,
    sessions,
    interest,
    delivery,
    signals,
    presence,
    verify: checkedVerify(options.verify ?? auth.verify, metrics, degraded),
    log,
    metrics,
    // Frozen: every session's actor then shares this one object (connection.machine.ts `limitsOf`).
    limits: Object.freeze({
      ...defaultConnectionLimits,
      clockToleranceMs: clockToleranceS * 1000,
      sendBytesPerSecond: defaults.sendBytesPerSecond,
      sendBytesBurst: defaults.sendBytesBurst,
      maxStrikes: defaults.maxStrikes,
      ...options.limits,
    }),
    authTimeoutMs: options.authTimeoutMs ?? defaults.authTimeoutMs,
    maxBufferedBytes: options.maxBufferedBytes ?? defaults.maxBufferedBytes,
    maxSessionsPerUser: options.maxSessionsPerUser ?? defaults.maxSessionsPerUser,
    userSessions: new Map(),
    userSendBudget: new UserSendBudget({
      bytesPerSecond: options.userSendBytesPerSecond ?? defaults.userSendBytesPerSecond,
      burst: options.userSendBytesBurst ?? defaults.userSendBytesBurst,
    }),
    degraded,
    observers,
    // The sessions' one supervisor: each actor's end reaches the node through its shard.
    // Their timers share one Node timer (timer-queue.ts).
    shards: new ActorShards((ended) => sessionEnded(node, ended), new TimerQueue()),
  };
  const logic = connectionLogic(node);
  // The session actors are inspected only while someone observes: XState builds no inspection
  // event otherwise. A recorder listens from the start, so a recorded session is whole.
  const inspection = inspectSessions(node);
  const setInspection = (active: boolean) => node.shards.setInspection(active ? inspection : undefined);
  const stopInspection = observers.onActivity(setInspection);
  setInspection(observers.active);

  // Revocations heard on NATS close every affected session here.
  auth.onRevoked((r) => closeRevoked(sessions, auth.revocations, r));

  // After a reconnect, what was published meanwhile comes from the streams (durable delivery), and
  // presence republishes its state and asks the others again.
  const natsConnected = watchNats(nc, metrics, log, () => {
    void delivery.resync();
    presence.resync();
  });
  let closing: Promise<void> | undefined;
  const drain = createDrain(
    sessions,
    { graceMs: options.drainGraceMs ?? defaults.drainGraceMs, windowMs: options.drainWindowMs ?? defaults.drainWindowMs },
    log,
  );
  let drainStartedAt: number | undefined;
  const readiness = () => {
    const status = auth.status();
    const ready = natsConnected() && !nc.isClosed() && !closing && !drain.readyzDown;
    return {
      ready,
      node: nodeId,
      nats: nc.isClosed() ? 'closed' : natsConnected() ? 'connected' : 'reconnecting',
      draining: Boolean(closing) || drain.readyzDown,
      breaker: status.breaker,
      degraded: status.breaker !== 'closed',
      connections: sessions.size,
    };
  };
  const badTarget = limitedLog(log);
  const server = createNodeServer({
    sources: { readiness, registry: metrics.registry, metricsToken: options.metricsToken, badTarget, publishApi },
    headersTimeoutMs: options.headersTimeoutMs ?? defaults.headersTimeoutMs,
    requestTimeoutMs: options.requestTimeoutMs ?? defaults.requestTimeoutMs,
    log,
  });

  const upgrades = createUpgrades({
    log,
    metrics,
    badTarget,
    allowedOrigins: options.allowedOrigins,
    trustProxy: options.trustProxy,
    handshakesPerIpPerSecond: options.handshakesPerIpPerSecond ?? defaults.handshakesPerIpPerSecond,
    maxSessionsPerIp: options.maxSessionsPerIp ?? defaults.maxSessionsPerIp,
    maxConnections: options.maxConnections ?? defaults.maxConnections,
    maxMessageBytes: options.maxMessageBytes ?? defaults.maxMessageBytes,
    draining: () => Boolean(closing),
    drainRefuses: () => drain.refusesUpgrades,
    sessionCount: () => sessions.size,
    open: (ws, token, since) => {
      const session = openSession(node, logic, ws, token, since);
      recorder?.describe(session.actor, { authTimeout: node.authTimeoutMs });
    },
  });
  server.on('upgrade', upgrades.onUpgrade);
  const stopHeartbeat = startHeartbeat(sessions, options.heartbeatIntervalMs ?? defaults.heartbeatIntervalMs);

  const port = await listen(server, options.port ?? defaults.port, options.host ?? defaults.host);
  const urlHost = !options.host || options.host === '0.0.0.0' ? '127.0.0.1' : options.host;
  log.info({ port, server: nc.getServer() }, 'gateway ready');

  const close = async () => {
    drain.cancel();
    stopHeartbeat();
    upgrades.stop();
    server.close();
    publishApiSub.unsubscribe();
    auth.stop();
    // The whole shutdown, a drain included, fits in shutdownTimeoutMs, with a second to spare for NATS.
    const shutdownTimeoutMs = options.shutdownTimeoutMs ?? defaults.shutdownTimeoutMs;
    const left = (drainStartedAt ?? Date.now()) + shutdownTimeoutMs - 1000 - Date.now();
    await drainSessions(sessions, Math.max(1000, left));
    server.closeAllConnections();
    // After the sessions' own leaves: the others drop whatever this node still held.
    presence.stop();
    await recorder?.close();
    stopInspection();
    await closeNats(nc);
    log.info('gateway stopped');
  };

  return {
    nodeId,
    port,
    url: `ws://${urlHost}:${port}/ws`,
    nc,
    sessions,
    interest,
    observers,
    auth,
    authStatus: () => auth.status(),
    drain: () => {
      drainStartedAt ??= Date.now();
      return drain.begin();
    },
    publishChat: (message) => delivery.publish(undefined, message),
    close: () => (closing ??= close()),
  };
}
