/**
 * A gateway's admin HTTP server, on a port of its own (`ADMIN_PORT`, off unless set; on in
 * `chatgate dev`): the live inspector page and its small API, behind an admin token, and in dev
 * the demo chat page.
 *
 * Access: the token never travels in a URL. The page's login form POSTs it once; the answer sets
 * an HttpOnly, SameSite=Strict cookie holding an expiry and an HMAC of it under a key made at
 * start (so a restart logs everyone out, and the cookie reveals nothing of the token). API calls
 * take that cookie or `Authorization: Bearer <token>`. Neither the token nor the cookie is ever
 * logged.
 *
 *   GET  /                  the inspector, or the login form
 *   POST /login, /logout    form posts
 *   GET  /api/machines      every machine: Mermaid text and the id of each state in it
 *   GET  /api/connections   live connections: session, user, states, age (oldest first, bounded)
 *   GET  /api/counts        SSE: actors per machine and state, sent when they change
 *   GET  /api/events?session=ID  SSE: that connection's state now, then what it lives through
 *   GET  /demo, POST /dev/token  dev only: the demo chat page and its token minting
 */
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../gateway/gateway.ts';
import { trustedHops } from '../gateway/upgrade.ts';
import { bearerToken, createHardenedServer, json, listen, sameSecret } from '../http.ts';
import { defaults } from '../defaults.ts';
import type { TLSSocket } from 'node:tls';
import { IpLimiter } from '../gateway/ip-limiter.ts';
import { silentLogger, type Logger } from '../log.ts';
import { connectionViews, leafPaths, machineViews, stateCounts, type MachineView } from './inspector-model.ts';
import { pageForm } from '../observe/observe.ts';
import { isValidId } from '../subjects.ts';
import { SseHub } from './sse.ts';
import { requestUrl } from '../request-target.ts';
import { errorSummary, limitedLog } from '../bounded-log.ts';

export interface DemoOptions {
  /** Mints a token for `user` with the dev keys, granting every room. */
  mint(user: string): Promise<string>;
}

export interface AdminServerOptions {
  gateway: Gateway;
  /** 0 picks a free port. */
  port: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** The admin token (16+ characters); required. */
  token: string;
  /** Serve the demo chat page and its token endpoint (dev only). */
  demo?: DemoOptions;
  /** How long a login lasts. @default 43200000 (12 hours) */
  sessionMs?: number;
  /** Connections listed by GET /api/connections at most. @default 500 */
  maxConnectionsListed?: number;
  /** Open SSE streams at most; more get 503. @default 64 */
  maxStreams?: number;
  /**
   * Proxies in front of the admin port (as `TRUST_PROXY`): behind them, `X-Forwarded-Proto:
   * https` (the entry that many from the right) says the page was served over TLS, and the login
   * cookie gets `Secure`. @default 0
   */
  trustProxy?: number | boolean;
  /** How long a request may take to send its headers; then HTTP 408 and close. @default 10000 */
  headersTimeoutMs?: number;
  /** How long a request may take to arrive in all (not the answer: event streams stay). @default 30000 */
  requestTimeoutMs?: number;
  log?: Logger;
}

export interface AdminServer {
  /** `http://host:port/` */
  url: string;
  port: number;
  /** Ends every stream and stops listening. Idempotent. */
  close(): Promise<void>;
}

const COOKIE = 'chatgate_admin';
const MAX_FORM_BYTES = 4096;
const pagesDir = new URL('./pages/', import.meta.url);
/**
 * Mermaid's browser bundle, served so the page draws offline (no CDN). The package ships it next
 * to the pages (scripts/build.mjs copies it into dist/); run from the sources, it is read from
 * the mermaid dev dependency. Never resolved from node_modules in the package: mermaid is no
 * dependency of it, and a project's own mermaid may be another version.
 */
const builtMermaid = new URL('mermaid.min.js', pagesDir);
const mermaidBundle: string | URL = existsSync(builtMermaid)
  ? builtMermaid
  : createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js');

/**
 * The client SDK's browser bundle, for the demo chat page: made by scripts/build.mjs beside the
 * built pages; run from the sources, the build's copy in dist/ (the tests build it first).
 */
const builtClient = new URL('chatgate-client.js', pagesDir);
const clientBundle: URL = existsSync(builtClient)
  ? builtClient
  : new URL('../../dist/src/admin/pages/chatgate-client.js', import.meta.url);

const ASSETS: Record<string, { file: string | URL; type: string; demo?: boolean }> = {
  '/assets/admin.css': { file: new URL('admin.css', pagesDir), type: 'text/css; charset=utf-8' },
  '/assets/inspector.js': { file: new URL('inspector.js', pagesDir), type: 'text/javascript; charset=utf-8' },
  '/assets/mermaid.min.js': { file: mermaidBundle, type: 'text/javascript; charset=utf-8' },
  '/assets/demo.js': { file: new URL('demo.js', pagesDir), type: 'text/javascript; charset=utf-8', demo: true },
  '/assets/chatgate-client.js': { file: clientBundle, type: 'text/javascript; charset=utf-8', demo: true },
};

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}


/**
 * Whether the browser reached this server over TLS: its own socket is TLS, or the trusted proxy
 * in front says so (`X-Forwarded-Proto`, the entry `hops` from the right; the client may have
 * written any entries further left).
 */
function servedOverTls(req: IncomingMessage, hops: number): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  const proto = req.headers['x-forwarded-proto'];
  if (hops === 0 || typeof proto !== 'string') return false;
  const entries = proto.split(',').map((e) => e.trim().toLowerCase());
  return entries[Math.max(0, entries.length - hops)] === 'https';
}

/** A loopback Host header: the demo's token endpoint answers nothing else (DNS rebinding). */
const isLoopbackHost = (host: string | undefined) => /^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(host ?? '');

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { gateway, token } = options;
  const log = (options.log ?? silentLogger).child({ node: gateway.nodeId, component: 'admin' });
  const sessionMs = options.sessionMs ?? 12 * 60 * 60 * 1000;
  const sessionKey = randomBytes(32);
  const logins = new IpLimiter({ perSecond: 5 });
  const hub = new SseHub({ maxStreams: options.maxStreams ?? 64 });
  const cache = new Map<string, Buffer>();
  let machines: MachineView[] | undefined;
  const gatewayOrigin = new URL(gateway.url).origin;
  const hops = trustedHops(options.trustProxy);
  /** A login cookie's attributes: `Secure` whenever the page came over TLS. */
  const cookieAttributes = (req: IncomingMessage) =>
    `Path=/; HttpOnly; SameSite=Strict${servedOverTls(req, hops) ? '; Secure' : ''}`;

  const mac = (exp: number) => createHmac('sha256', sessionKey).update(`admin-session:${exp}`).digest('base64url');
  const loggedIn = (req: IncomingMessage) => {
    const value = cookies(req).get(COOKIE);
    if (!value) return false;
    const [exp, sig] = value.split('.');
    return Number(exp) > Date.now() && sig !== undefined && sameSecret(sig, mac(Number(exp)));
  };
  const authorized = (req: IncomingMessage) => {
    const bearer = bearerToken(req);
    return bearer !== undefined ? sameSecret(bearer, token) : loggedIn(req);
  };

  const file = async (path: string | URL) => {
    const key = String(path);
    let data = cache.get(key);
    if (!data) cache.set(key, (data = await readFile(path)));
    return data;
  };
  const page = async (res: ServerResponse, name: string, status = 200, replace?: [string, string]) => {
    let html = (await file(new URL(name, pagesDir))).toString('utf8');
    if (replace) html = html.replace(replace[0], replace[1]);
    // The demo talks to the gateway's WebSocket port; nothing else leaves the admin origin.
    const connect = name === 'demo.html' ? `'self' ${gatewayOrigin}` : `'self'`;
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy':
        `default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; ` +
        `font-src 'self' data:; connect-src ${connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
    });
    res.end(html);
  };

  const login = async (req: IncomingMessage, res: ServerResponse) => {
    const ip = req.socket.remoteAddress ?? '';
    if (!logins.take(ip)) return json(res, 429, { error: 'too many login attempts' });
    const body = await readBody(req);
    if (body === undefined) return json(res, 413, { error: 'form too large' });
    const given = new URLSearchParams(body).get('token') ?? '';
    if (!sameSecret(given, token)) {
      log.warn({ ip }, 'admin login refused');
      return page(res, 'login.html', 401, ['<!--error-->', '<p class="error">That token is not right.</p>']);
    }
    const exp = Date.now() + sessionMs;
    log.info({ ip }, 'admin login');
    res.writeHead(303, {
      location: '/',
      'set-cookie': `${COOKIE}=${exp}.${mac(exp)}; ${cookieAttributes(req)}; Max-Age=${Math.floor(sessionMs / 1000)}`,
      'cache-control': 'no-store',
    });
    res.end();
  };

  const mintForDemo = async (req: IncomingMessage, res: ServerResponse, demo: DemoOptions) => {
    // Only this page may ask: a JSON body (a cross-site form cannot send one without a CORS
    // preflight, which is never granted), from a loopback Host and, when sent, this Origin.
    const origin = req.headers.origin;
    if (!isLoopbackHost(req.headers.host) || (origin !== undefined && origin !== `http://${req.headers.host}`)) {
      return json(res, 403, { error: 'forbidden' });
    }
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return json(res, 415, { error: 'send JSON' });
    const body = await readBody(req);
    if (body === undefined) return json(res, 413, { error: 'body too large' });
    let user: unknown;
    try {
      user = (JSON.parse(body) as { user?: unknown }).user;
    } catch {
      return json(res, 400, { error: 'not JSON' });
    }
    if (typeof user !== 'string' || !isValidId(user) || user.length > 64) {
      return json(res, 400, { error: 'user: 1–64 characters' });
    }
    return json(res, 200, { token: await demo.mint(user), url: gateway.url });
  };

  const events = (res: ServerResponse, id: string) => {
    const session = gateway.sessions.get(id);
    if (!session) return json(res, 404, { error: 'no such session' });
    const stream = hub.open(res);
    if (!stream) return;
    const snapshot = session.actor.getSnapshot();
    stream.send('snapshot', {
      session: id,
      user: snapshot.context.user ?? null,
      value: snapshot.value,
      states: leafPaths(snapshot.value),
      startedAt: session.startedAt,
    });
    const stop = gateway.observers.listen({
      filter: { machine: 'connection', session: id },
      raw: true,
      receive: (o) => {
        // Runs inside the actor's inspection: nothing thrown here may reach the actor.
        try {
          stream.send('observation', pageForm(o));
        } catch (err) {
          log.warn({ err, session: id }, 'observation not sent');
        }
      },
    });
    stream.onClose(stop);
    stream.whileAlive(() => gateway.sessions.has(id), 'end');
  };

  const counts = (res: ServerResponse) => {
    const stream = hub.open(res);
    if (stream) hub.subscribeTicker('counts', stream, () => stateCounts(gateway));
  };

  const routes = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const path = url.pathname;
    const asset = ASSETS[path];
    if (req.method === 'GET' && asset && (!asset.demo || options.demo)) {
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
      res.end(await file(asset.file));
      return;
    }
    if (path === '/favicon.ico') return void res.writeHead(204).end();
    if (req.method === 'POST' && path === '/login') return login(req, res);
    if (req.method === 'POST' && path === '/logout') {
      res.writeHead(303, { location: '/', 'set-cookie': `${COOKIE}=; ${cookieAttributes(req)}; Max-Age=0` });
      return void res.end();
    }
    if (options.demo && req.method === 'GET' && path === '/demo') return page(res, 'demo.html');
    if (options.demo && req.method === 'POST' && path === '/dev/token') return mintForDemo(req, res, options.demo);
    if (req.method === 'GET' && path === '/') return page(res, authorized(req) ? 'inspector.html' : 'login.html');
    if (!path.startsWith('/api/')) return json(res, 404, { error: 'not found' });
    if (!authorized(req)) return json(res, 401, { error: 'log in first' });
    if (req.method !== 'GET') return json(res, 405, { error: 'method not allowed' });
    switch (path) {
      case '/api/machines':
        return json(res, 200, { node: gateway.nodeId, machines: (machines ??= await machineViews()) });
      case '/api/connections':
        return json(res, 200, connectionViews(gateway, options.maxConnectionsListed ?? 500));
      case '/api/counts':
        return counts(res);
      case '/api/events':
        return events(res, url.searchParams.get('session') ?? '');
      default:
        return json(res, 404, { error: 'not found' });
    }
  };

  const failed = limitedLog(log);
  const badTarget = limitedLog(log);
  const server = createHardenedServer(
    {
      headersTimeoutMs: options.headersTimeoutMs ?? defaults.headersTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? defaults.requestTimeoutMs,
    },
    (req, res) => {
      res.setHeader('x-frame-options', 'DENY');
      res.setHeader('referrer-policy', 'no-referrer');
      res.setHeader('x-content-type-options', 'nosniff');
      const url = requestUrl(req, badTarget);
      if (!url) return json(res, 400, { error: 'bad request target' });
      // Nothing a request holds may reach the process: a failure is one bounded line and a 500.
      routes(req, res, url).catch((err: unknown) => {
        failed('error', { error: errorSummary(err), path: url.pathname.slice(0, 200) }, 'admin request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    },
  );
  const sweep = setInterval(() => logins.sweep(), 10_000);
  sweep.unref();

  const port = await listen(server, options.port, options.host ?? '127.0.0.1');
  const host = options.host && options.host !== '0.0.0.0' ? options.host : '127.0.0.1';
  log.info({ port }, 'admin server ready');

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        clearInterval(sweep);
        hub.closeAll();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
