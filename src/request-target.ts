/**
 * The request target of an HTTP request (RFC 9112 §3.2), read the same way, and without ever
 * throwing, by every HTTP handler of a node: the gateway's port, its upgrades and the admin port.
 *
 * Node's HTTP parser hands over any target it can cut from the request line, and
 * `new URL(target, base)` throws on some of them (`//:99999`, `http://[`) and takes `//x` for a
 * host of its own. Here:
 *   - origin-form, `/path?query`: that path, also when it starts with `//` (`//ws` is not `/ws`);
 *   - absolute-form, `http://host/path` (what a client that talks to a proxy sends): its path;
 *   - anything else (`*`, `ws`, an absolute URL that does not parse): none. The caller answers
 *     HTTP 400, and this module writes the one log line (within the caller's budget, so a flood
 *     of bad requests cannot flood the log), which never holds the target itself (a query
 *     string may carry a token).
 */
import type { IncomingMessage } from 'node:http';
import type { LimitedLog } from './bounded-log.ts';

/** The target as a URL (only its path and query are meaningful), or undefined when it is not one. */
export function parseRequestTarget(target: string | undefined): URL | undefined {
  if (!target) return undefined;
  try {
    if (target.startsWith('/')) return new URL(`http://target${target}`);
    const url = new URL(target);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    // Not a URL at all: the caller's 400.
    return undefined;
  }
}

/** `parseRequestTarget` of `req.url`; when it is none, logs one line and returns undefined. */
export function requestUrl(req: IncomingMessage, report: LimitedLog): URL | undefined {
  const url = parseRequestTarget(req.url);
  if (!url) report('info', { ip: req.socket.remoteAddress, method: req.method, length: req.url?.length ?? 0 }, 'bad request target');
  return url;
}
