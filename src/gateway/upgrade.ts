/**
 * Upgrade admission: which `/ws` upgrade requests become sessions. In order: a request target that
 * is a path (else 400), the path `/ws` (404), an allowed Origin when a list is set (403), the
 * handshake rate of the client address (429), the sessions of that address (429), a node that is
 * not draining (426); after the handshake, a node that is not full (close 1013). What passes is
 * handed to `open` with its token (Authorization header or `bearer.` subprotocol).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { IpLimiter } from './ip-limiter.ts';
import type { Metrics } from './metrics.ts';
import { requestUrl } from '../request-target.ts';
import { MAX_POSITION_LENGTH } from '../durable/positions.ts';
import { errorSummary, limitedLog, type LimitedLog } from '../bounded-log.ts';
import { bearerToken } from '../http.ts';
import type { Logger } from '../log.ts';

/**
 * What a log line says of a refused Origin: its length, and its first 64 characters with anything
 * but printable ASCII replaced, never the whole header (a client may send 15 KB of it).
 */
export function originFields(origin: string | undefined): { originLength: number; origin?: string } {
  if (origin === undefined) return { originLength: 0 };
  return { originLength: origin.length, origin: origin.slice(0, 64).replace(/[^\x20-\x7e]/g, '?') };
}


import { BEARER_PROTOCOL_PREFIX, SUBPROTOCOL } from '../protocol.ts';

// One source with the client SDK: src/protocol.ts.
export { SUBPROTOCOL };

/**
 * `?since=` of the upgrade URL: a resume position is opaque, and anything longer than one could
 * be is no position (`''`: `recovered: false`), never a refusal.
 */
export function upgradeSince(url: URL): string | undefined {
  const since = url.searchParams.get('since');
  if (since === null) return undefined;
  return since.length <= MAX_POSITION_LENGTH ? since : '';
}

/** The token that came with the upgrade request: Authorization header or `bearer.` subprotocol. */
export function upgradeToken(req: IncomingMessage): string | undefined {
  const fromHeader = bearerToken(req);
  if (fromHeader !== undefined) return fromHeader;
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

type RefusalStatus = 400 | 403 | 404 | 426 | 429 | 503;
export type Admission =
  | { refused: { status: RefusalStatus; text: string } }
  | { refused?: undefined; ip: string; token: string | undefined; since: string | undefined };

function refuse(socket: Duplex, status: RefusalStatus, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

export interface UpgradeOptions {
  log: Logger;
  metrics: Metrics;
  /** Where a bad request target is logged, within its budget. */
  badTarget: LimitedLog;
  allowedOrigins?: readonly string[];
  trustProxy?: number | boolean;
  handshakesPerIpPerSecond: number;
  maxSessionsPerIp: number;
  maxConnections: number;
  maxMessageBytes: number;
  /** True once the node closes: new upgrades get 426. */
  draining(): boolean;
  /** True once a drain (SIGTERM) is past its grace: new upgrades get 503 (src/gateway/drain.ts). */
  drainRefuses?(): boolean;
  /** Sessions open on this node. */
  sessionCount(): number;
  /** Makes the session of an admitted socket. */
  /** `since`: the upgrade URL's resume position (durable delivery), if any. */
  open(ws: WebSocket, token: string | undefined, since: string | undefined): void;
}

export interface Upgrades {
  /** Decides one upgrade request: a refusal, or the client address and token it comes with. */
  admit(req: IncomingMessage): Admission;
  /** The server's `upgrade` listener. */
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  stop(): void;
}

export function createUpgrades(options: UpgradeOptions): Upgrades {
  const { log, metrics, maxSessionsPerIp, maxConnections } = options;
  const allowedOrigins = options.allowedOrigins?.length ? new Set(options.allowedOrigins) : undefined;
  const handshakes = new IpLimiter({ perSecond: options.handshakesPerIpPerSecond });
  const hops = trustedHops(options.trustProxy);
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxMessageBytes,
    clientTracking: false,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  /** Open sockets per client address; an address leaves the map with its last socket. */
  const ipSessions = new Map<string, number>();
  const releaseIp = (ip: string) => {
    const left = (ipSessions.get(ip) ?? 1) - 1;
    if (left > 0) ipSessions.set(ip, left);
    else ipSessions.delete(ip);
  };
  /**
   * The close listener of a socket from `ip`. Made here, not in `upgrade`: a closure made there
   * shares its scope with the request's token (V8 gives closures of one scope one context), and
   * would keep the `Authorization` header alive for the whole session.
   */
  const releaseIpOnClose = (ip: string) => () => releaseIp(ip);
  const upgradeFailed = limitedLog(log);
  // One budget per kind of refusal: each is the client's doing, and a flood of them must not flood the log.
  const originRefused = limitedLog(log);
  const handshakeLimited = limitedLog(log);
  const tooManyFromIp = limitedLog(log);
  const nodeFull = limitedLog(log);

  const admit = (req: IncomingMessage): Admission => {
    const url = requestUrl(req, options.badTarget);
    if (!url) return { refused: { status: 400, text: 'Bad Request' } };
    if (url.pathname !== '/ws') return { refused: { status: 404, text: 'Not Found' } };
    if (allowedOrigins && !allowedOrigins.has(req.headers.origin ?? '')) {
      originRefused('info', originFields(req.headers.origin), 'origin refused');
      return { refused: { status: 403, text: 'Forbidden' } };
    }
    const ip = clientAddress(req, hops);
    if (!handshakes.take(ip)) {
      metrics.rateLimited('handshake');
      handshakeLimited('info', { ip }, 'handshake rate limited');
      return { refused: { status: 429, text: 'Too Many Requests' } };
    }
    if ((ipSessions.get(ip) ?? 0) >= maxSessionsPerIp) {
      metrics.rateLimited('connections');
      tooManyFromIp('info', { ip, max: maxSessionsPerIp }, 'too many sessions from one address');
      return { refused: { status: 429, text: 'Too Many Requests' } };
    }
    if (options.draining()) return { refused: { status: 426, text: 'Upgrade Required' } };
    if (options.drainRefuses?.()) return { refused: { status: 503, text: 'Service Unavailable' } };
    return { ip, token: upgradeToken(req), since: upgradeSince(url) };
  };

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const admission = admit(req);
    if (admission.refused) return refuse(socket, admission.refused.status, admission.refused.text);
    const { ip, token, since } = admission;
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (options.sessionCount() >= maxConnections) {
        metrics.rateLimited('connections');
        metrics.closed(1013);
        nodeFull('info', { max: maxConnections }, 'node full');
        ws.close(1013, 'node full');
        return;
      }
      ipSessions.set(ip, (ipSessions.get(ip) ?? 0) + 1);
      ws.once('close', releaseIpOnClose(ip));
      options.open(ws, token, since);
    });
  };

  const sweep = setInterval(() => handshakes.sweep(), 10_000);
  sweep.unref();

  return {
    admit,
    onUpgrade: (req, socket, head) => {
      socket.on('error', destroySocket);
      // Whatever goes wrong with one upgrade ends that socket, never the process.
      try {
        upgrade(req, socket, head);
      } catch (err) {
        upgradeFailed('error', { error: errorSummary(err) }, 'upgrade failed');
        socket.destroy();
      }
    },
    stop: () => clearInterval(sweep),
  };
}
