/**
 * The gateway's auth requests, all answered on one subscription.
 *
 * nats.js's `nc.request` makes, for every request, a timer and, once answered, an `Error` (the
 * rejection of its own settled request: `RequestError('cancelled')`, with a captured stack): in a
 * profile of a gateway while sessions connect (BENCHMARKS.md, issue 15) the constructor alone was
 * 2.3 % of the node's time. Here a request is a core publish with a reply subject and one map
 * entry, on the requests shared with src/durable/pub-acks.ts (src/bus/inbox-requests.ts).
 *
 * The answers are what `requestVerdict` in client.ts made of `nc.request`: the service's verdict,
 * or `unavailable` with the failure kind the breaker needs (no responders, timeout, other).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { subjects } from '../subjects.ts';
import { InboxRequests, NoAnswer, isNoResponders } from '../bus/inbox-requests.ts';
import { verdictOf, unavailable, type RemoteVerdict } from './client.ts';

export class VerifyRequests {
  readonly #requests: InboxRequests;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#requests = new InboxRequests(nc, timeoutMs);
  }

  /** Asks the auth service (its queue group) for its verdict on one token. Never rejects. */
  verdict(token: string): Promise<RemoteVerdict> {
    return this.#requests.request(subjects.authVerify, JSON.stringify({ token })).then(
      (msg) => {
        try {
          // The server's answer when nobody listens on the subject (nats.js: a no-responders error).
          if (isNoResponders(msg)) return unavailable('noResponders', 'no auth service responders');
          return verdictOf(msg);
        } catch {
          // An answer nats.js cannot read (a malformed header block): no verdict.
          return unavailable('error', 'auth reply malformed');
        }
      },
      (err: unknown) =>
        err instanceof NoAnswer && err.kind === 'timeout'
          ? unavailable('timeout', 'auth request timed out')
          : unavailable('error', 'auth request failed'),
    );
  }

  /** Stops listening; requests still waiting fail as `unavailable`. */
  close(): void {
    this.#requests.close();
  }
}
