/**
 * The plain-HTTP side of a gateway's port: `/healthz` (the process serves), `/readyz` (connected
 * to NATS, subscriptions in place, not draining; an open auth breaker is shown but does not make
 * the node unready, since it still admits sessions by local verification), `/metrics`
 * (Prometheus text; behind `METRICS_TOKEN` when set), `POST /api/publish` (publish-api.ts, 404
 * without API_TOKEN). `/ws` without an upgrade gets 426. A request
 * target that is not a path gets 400 (src/request-target.ts).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { errorSummary, limitedLog, type LimitedLog } from '../bounded-log.ts';
import type { Logger } from '../log.ts';
import { requestUrl } from '../request-target.ts';
import { bearerToken, createHardenedServer, json, sameSecret } from '../http.ts';
import { handlePublishHttp, type PublishApiOptions } from './publish-api.ts';

export interface HttpSources {
  readiness(): { ready: boolean } & Record<string, unknown>;
  registry: Registry;
  metricsToken?: string;
  /** Where a bad request target is logged, within its budget (src/bounded-log.ts). */
  badTarget: LimitedLog;
  /** `POST /api/publish` (404 unless it has an `apiToken`). */
  publishApi?: PublishApiOptions;
}

export async function handleHttp(req: IncomingMessage, res: ServerResponse, sources: HttpSources): Promise<void> {
  const url = requestUrl(req, sources.badTarget);
  if (!url) {
    res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' });
    res.end('bad request target\n');
    return;
  }
  const path = url.pathname;
  if (path === '/api/publish' && sources.publishApi) return handlePublishHttp(req, res, sources.publishApi);
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  switch (path) {
    case '/healthz':
      return json(res, 200, { status: 'ok' });
    case '/readyz': {
      const body = sources.readiness();
      return json(res, body.ready ? 200 : 503, body);
    }
    case '/metrics': {
      if (sources.metricsToken) {
        const given = bearerToken(req) ?? '';
        if (!sameSecret(given, sources.metricsToken)) {
          res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
          return;
        }
      }
      const text = await sources.registry.metrics();
      res.writeHead(200, { 'content-type': sources.registry.contentType });
      res.end(text);
      return;
    }
    case '/ws':
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
      res.end('use a WebSocket upgrade\n');
      return;
    default:
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
  }
}

/**
 * The node's HTTP server: these routes for plain requests (upgrades are the caller's, see
 * upgrade.ts). Slow headers are cut (HTTP 408): an upgrade is handled as soon as its headers are
 * in. Nothing a request holds may reach the process: a failure is one bounded line and a 500.
 */
export function createNodeServer(options: {
  sources: HttpSources;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  log: Logger;
}): Server {
  const httpFailed = limitedLog(options.log);
  return createHardenedServer(options, (req, res) => {
    handleHttp(req, res, options.sources).catch((err: unknown) => {
      httpFailed('error', { error: errorSummary(err) }, 'http request failed');
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
}
