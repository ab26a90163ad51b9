/**
 * A gateway node (`chatgate gateway`): an HTTP server whose `/ws` path upgrades to WebSocket, one
 * connection actor per socket, and one NATS connection shared by all of them.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { hostname } from 'node:os';
import { WebSocketServer, type WebSocket } from 'ws';
import { nuid, type NatsConnection } from '@nats-io/nats-core';
import { defaultConnectionLimits, type ConnectionLimits } from '../../machines/connection.machine.ts';
import { startAuthGate, type AuthGate, type AuthGateStatus, type DegradedPolicy } from '../auth/gate.ts';
import type { BreakerOptions } from '../../machines/circuit-breaker.machine.ts';
import type { ClaimRules } from '../auth/tokens.ts';
import { createRechecker } from './recheck.ts';
import { createMetrics, type AuthOutcome, type ConnectionState } from './metrics.ts';
import { IpLimiter } from './ip-limiter.ts';
import { handleHttp } from './ops-http.ts';
import { closeNats, connectNats, type NatsCredentials } from '../bus/connection.ts';
import { requestUrl } from '../request-target.ts';
import { errorSummary, limitedLog } from '../bounded-log.ts';
import type { ConnectionActor } from './session.ts';
import { decodeChatMessage } from './codec.ts';
import { createPublisher } from './publish.ts';
import { CONTROL_MARK, Presence } from './presence.ts';
import { inboxPrefix } from '../bus/permissions.ts';
import { servePublishApi, type PublishApiOptions } from './publish-api.ts';
import { Interest } from './interest.ts';
import { silentLogger, type Logger } from '../log.ts';
import { Observers } from '../observe/observe.ts';
import { startRecorder, type RecordingOptions } from '../observe/recording.ts';
import { connectionLogic, openSession, type NodeContext, type Session } from './session.ts';
import { MAX_TOKEN_LENGTH, type TokenVerifier } from '../auth/tokens.ts';
import { limitDefaults } from '../config.ts';

export const SUBPROTOCOL = 'chatgate.v1';
const BEARER_PROTOCOL_PREFIX = 'bearer.';

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
  /** How long shutdown waits for sockets to close before it cuts them. @default 10000 */
  shutdownTimeoutMs?: number;
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
  /** Checks tokens; the auth service over NATS by default. */
  verify?: TokenVerifier;
  /** Where the actors report what they live through (inspector page, recorder). @default a new one */
  observers?: Observers;
  /** Presence: heartbeat interval and the silence after which a node counts as dead. @default 2000 / 10000 */
  presenceHeartbeatMs?: number;
  presenceNodeTimeoutMs?: number;
  /** The most users a `presence` answer lists. @default 1000 */
  presenceMaxUsers?: number;
  /** When set, `POST /api/publish` on this port takes `Authorization: Bearer <apiToken>`; unset, it is 404. */
  apiToken?: string;
  /** Record what the connection actors (all, one user's or one session's) and the breaker receive; see src/observe/recording.ts. @default off */
  recording?: RecordingOptions;
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
  /** Stops accepting, closes every session with 1001, drains NATS. Idempotent and bounded. */
  close(): Promise<void>;
}

/** The token that came with the upgrade request: Authorization header or `bearer.` subprotocol. */
export function upgradeToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match) return match[1];
  }
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols) {
    for (const p of protocols.split(',')) {
      const trimmed = p.trim();
      if (trimmed.startsWith(BEARER_PROTOCOL_PREFIX)) return trimmed.slice(BEARER_PROTOCOL_PREFIX.length);
    }
  }
  return undefined;
}

/** `TRUST_PROXY` as a count of trusted proxies: `true` is one, `false` none. */
export const trustedHops = (trustProxy: number | boolean | undefined): number =>
  trustProxy === true ? 1 : trustProxy === false || trustProxy === undefined ? 0 : trustProxy;

/**
 * The client's address: the socket's, or behind `hops` trusted proxies the X-Forwarded-For entry
 * `hops` places from the right, the rightmost one that no trusted proxy wrote. Entries further
 * left were written by the client and prove nothing. With fewer entries than hops, the leftmost.
 */
export function clientAddress(req: IncomingMessage, hops: number): string {
  const forwarded = req.headers['x-forwarded-for'];
  if (hops > 0 && typeof forwarded === 'string') {
    const entries = forwarded.split(',').map((e) => e.trim());
    const entry = entries[Math.max(0, entries.length - hops)];
    // An address is at most 45 characters; a longer entry is cut so that it cannot bloat a map key.
    if (entry) return entry.slice(0, 64);
  }
  return req.socket.remoteAddress ?? '';
}

/**
 * A module-level listener, not a closure: a closure in the upgrade handler would share its scope
 * with the callback that reads `req`, and keep the upgrade request (with its bearer token) alive
 * for the whole session.
 */
function destroySocket(this: Duplex): void {
  this.destroy();
}

/** The label of a connection's machine state in metrics. */
function connectionState(actor: ConnectionActor): ConnectionState {
  const snapshot = actor.getSnapshot();
  if (snapshot.matches({ open: 'active' })) return 'active';
  if (snapshot.matches({ open: 'authenticating' })) return 'authenticating';
  if (snapshot.matches({ open: 'awaitingAuth' })) return 'awaiting_auth';
  return 'closing';
}

function refuse(socket: Duplex, status: 400 | 403 | 404 | 426 | 429, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const nodeId = options.nodeId ?? `${hostname()}-${nuid.next().slice(-6)}`;
  const clockToleranceS = options.clockToleranceS ?? limitDefaults.clockToleranceS;
  const log = (options.log ?? silentLogger).child({ node: nodeId });
  const nc = await connectNats(options.natsUrl ?? 'nats://127.0.0.1:4222', `chatgate-gateway-${nodeId}`, {
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
    recheckPerSecond: options.recheckPerSecond,
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

  const malformed = limitedLog(log);
  const interest = new Interest<Session>(nc, (members, data, subject) => {
    // A presence control line of another node: never written to a socket.
    if (data[0] === CONTROL_MARK) {
      presence.onRoomControl(subject, data);
      return;
    }
    const message = decodeChatMessage(data);
    if (!message) {
      malformed('warn', { bytes: data.length }, 'malformed chat message dropped');
      return;
    }
    let first = true;
    for (const session of members) {
      if (session.id === message.origin) continue;
      if (session.write(message.frame, message.type) && first) {
        metrics.delivered(message.ts);
        first = false;
      }
    }
  }, log);
  const presence = new Presence({
    nc,
    nodeId,
    log,
    heartbeatMs: options.presenceHeartbeatMs,
    nodeTimeoutMs: options.presenceNodeTimeoutMs,
    maxUsers: options.presenceMaxUsers,
    inboxPrefix: inboxPrefix('gateway'),
    broadcast: (subject, frame, type) => {
      for (const session of interest.members(subject)) session.write(frame, type);
    },
  });
  await presence.start();
  const publisher = createPublisher(nc, () => interest.flush());
  const publishApi: PublishApiOptions = {
    publisher,
    log,
    maxBytes: options.maxMessageBytes ?? 65536,
    apiToken: options.apiToken,
  };
  const publishApiSub = servePublishApi(nc, publishApi);
  const verify = options.verify ?? auth.verify;
  const node: NodeContext = {
    nodeId,
    nc,
    sessions,
    interest,
    publisher,
    presence,
    verify: async (token) => {
      // Refused here, before anything asks the auth service: on every path a token comes by.
      if (token.length > MAX_TOKEN_LENGTH) return { outcome: 'invalid', reason: 'token too long' };
      const started = performance.now();
      let outcome: AuthOutcome = 'error';
      try {
        const result = await verify(token);
        outcome = result.outcome === 'ok' ? (result.degraded ? 'degraded' : 'ok') : result.outcome;
        // Admitted locally after a failed call that did not open the breaker: no recovery will
        // come to re-check it, so ask for one soon.
        if (outcome === 'degraded' && auth.breaker.getSnapshot().matches('closed')) {
          setTimeout(recheck, 1000).unref();
        }
        return result;
      } finally {
        metrics.authChecked(outcome, (performance.now() - started) / 1000);
      }
    },
    log,
    metrics,
    limits: {
      ...defaultConnectionLimits,
      clockToleranceMs: clockToleranceS * 1000,
      sendBytesPerSecond: limitDefaults.sendBytesPerSecond,
      sendBytesBurst: limitDefaults.sendBytesBurst,
      maxStrikes: limitDefaults.maxStrikes,
      ...options.limits,
    },
    authTimeoutMs: options.authTimeoutMs ?? 5000,
    maxBufferedBytes: options.maxBufferedBytes ?? 1024 * 1024,
    maxSessionsPerUser: options.maxSessionsPerUser ?? limitDefaults.maxSessionsPerUser,
    userSessions: new Map(),
    observers,
  };
  const logic = connectionLogic(node);
  const recheck = createRechecker(sessions, auth, log);

  // Revocations heard on NATS close every affected session here.
  auth.onRevoked((r) => {
    for (const session of sessions.values()) {
      const { user, jti, iat } = session.actor.getSnapshot().context;
      if (auth.revocations.isRevoked({ sub: user, jti, iat }) && ((r.sub !== undefined && user === r.sub) || (r.jti !== undefined && jti === r.jti))) {
        session.actor.send({ type: 'session.revoked', reason: 'token revoked' });
      }
    }
  });
  // Once the auth service is back, sessions admitted without it are checked again, paced.
  auth.onRecovered(recheck);

  const allowedOrigins = options.allowedOrigins?.length ? new Set(options.allowedOrigins) : undefined;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxMessageBytes ?? 65536,
    clientTracking: false,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

  // NATS connection state, for readiness and the reconnect counter.
  let natsConnected = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') natsConnected = false;
      if (status.type === 'reconnect') {
        natsConnected = true;
        metrics.natsReconnected();
        log.warn({ server: nc.getServer() }, 'nats reconnected');
        presence.resync();
      }
    }
  })();

  let closing: Promise<void> | undefined;
  const readiness = () => {
    const status = auth.status();
    const ready = natsConnected && !nc.isClosed() && !closing;
    return {
      ready,
      node: nodeId,
      nats: nc.isClosed() ? 'closed' : natsConnected ? 'connected' : 'reconnecting',
      draining: Boolean(closing),
      breaker: status.breaker,
      degraded: status.breaker !== 'closed',
      connections: sessions.size,
    };
  };
  // Nothing a request holds may reach the process: a failure is one bounded line and a 500.
  const httpFailed = limitedLog(log);
  const badTarget = limitedLog(log);
  // Slow headers are cut (HTTP 408): an upgrade is handled as soon as its headers are in.
  const headersTimeout = options.headersTimeoutMs ?? limitDefaults.headersTimeoutMs;
  const server: Server = createServer({
    headersTimeout,
    requestTimeout: Math.max(headersTimeout, options.requestTimeoutMs ?? limitDefaults.requestTimeoutMs),
    // How often Node looks for requests over those bounds; its default (30 s) would stretch them.
    connectionsCheckingInterval: Math.min(1000, Math.ceil(headersTimeout / 4)),
  }, (req, res) => {
    handleHttp(req, res, { readiness, registry: metrics.registry, metricsToken: options.metricsToken, badTarget, publishApi }).catch(
      (err: unknown) => {
        httpFailed('error', { error: errorSummary(err) }, 'http request failed');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      },
    );
  });

  const maxConnections = options.maxConnections ?? 10_000;
  const handshakes = new IpLimiter({ perSecond: options.handshakesPerIpPerSecond ?? 20 });
  const hops = trustedHops(options.trustProxy);
  const maxSessionsPerIp = options.maxSessionsPerIp ?? limitDefaults.maxSessionsPerIp;
  /** Open sockets per client address; an address leaves the map with its last socket. */
  const ipSessions = new Map<string, number>();
  const releaseIp = (ip: string) => {
    const left = (ipSessions.get(ip) ?? 1) - 1;
    if (left > 0) ipSessions.set(ip, left);
    else ipSessions.delete(ip);
  };
  const upgradeFailed = limitedLog(log);
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = requestUrl(req, badTarget);
    if (!url) return refuse(socket, 400, 'Bad Request');
    if (url.pathname !== '/ws') return refuse(socket, 404, 'Not Found');
    if (allowedOrigins && !allowedOrigins.has(req.headers.origin ?? '')) {
      log.info({ origin: req.headers.origin }, 'origin refused');
      return refuse(socket, 403, 'Forbidden');
    }
    const ip = clientAddress(req, hops);
    if (!handshakes.take(ip)) {
      metrics.rateLimited('handshake');
      log.info({ ip }, 'handshake rate limited');
      return refuse(socket, 429, 'Too Many Requests');
    }
    if ((ipSessions.get(ip) ?? 0) >= maxSessionsPerIp) {
      metrics.rateLimited('connections');
      log.info({ ip, max: maxSessionsPerIp }, 'too many sessions from one address');
      return refuse(socket, 429, 'Too Many Requests');
    }
    if (closing) return refuse(socket, 426, 'Upgrade Required');
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (sessions.size >= maxConnections) {
        metrics.rateLimited('connections');
        metrics.closed(1013);
        log.info({ max: maxConnections }, 'node full');
        ws.close(1013, 'node full');
        return;
      }
      ipSessions.set(ip, (ipSessions.get(ip) ?? 0) + 1);
      ws.once('close', () => releaseIp(ip));
      const session = openSession(node, logic, ws, upgradeToken(req));
      recorder?.describe(session.actor, { authTimeout: node.authTimeoutMs });
    });
  };
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', destroySocket);
    // Whatever goes wrong with one upgrade ends that socket, never the process.
    try {
      upgrade(req, socket, head);
    } catch (err) {
      upgradeFailed('error', { error: errorSummary(err) }, 'upgrade failed');
      socket.destroy();
    }
  });
  const sweep = setInterval(() => handshakes.sweep(), 10_000);
  sweep.unref();

  const heartbeat = setInterval(() => {
    for (const session of sessions.values()) {
      if (!session.alive) {
        session.actor.send({ type: 'heartbeat.lost' });
        continue;
      }
      session.alive = false;
      session.ws.ping();
    }
  }, options.heartbeatIntervalMs ?? 30_000);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const urlHost = !options.host || options.host === '0.0.0.0' ? '127.0.0.1' : options.host;
  log.info({ port, server: nc.getServer() }, 'gateway ready');

  const close = async () => {
    clearInterval(heartbeat);
    clearInterval(sweep);
    server.close();
    publishApiSub.unsubscribe();
    auth.stop();
    for (const session of sessions.values()) session.actor.send({ type: 'node.shutdown' });
    const deadline = Date.now() + (options.shutdownTimeoutMs ?? 10_000);
    while (sessions.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const session of sessions.values()) session.ws.terminate();
    server.closeAllConnections();
    presence.stop();
    await recorder?.close();
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
    close: () => (closing ??= close()),
  };
}
