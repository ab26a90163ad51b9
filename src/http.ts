/**
 * The small HTTP helpers every server of the package shares (gateway port, admin server): one
 * hardened server, one Bearer parser, one secret compare, one JSON answer, one listen.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';

export interface ServerTimeouts {
  /** How long a request (an upgrade too) may take to send its headers; then HTTP 408 and close. */
  headersTimeoutMs: number;
  /** How long a request may take to arrive in all (headers and body; not the answer). */
  requestTimeoutMs: number;
}

/**
 * An HTTP server whose clients cannot hold it with slow headers or bodies (slowloris): Node's
 * defaults are 60 s and 300 s, checked every 30 s. Every server of the package is made here.
 */
export function createHardenedServer(timeouts: ServerTimeouts, handler: RequestListener): Server {
  const headersTimeout = timeouts.headersTimeoutMs;
  return createServer(
    {
      headersTimeout,
      requestTimeout: Math.max(headersTimeout, timeouts.requestTimeoutMs),
      // How often Node looks for requests over those bounds; its default (30 s) would stretch them.
      connectionsCheckingInterval: Math.min(1000, Math.ceil(headersTimeout / 4)),
    },
    handler,
  );
}

/** The token of an `Authorization: Bearer <token>` header, if the header is one. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}

/** Compares secrets in constant time, whatever their lengths (the length is not revealed either). */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** A JSON answer that no cache keeps. */
export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}

/** Listens on `port` and `host`; resolves with the port actually bound, rejects with a listen error. */
export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}
