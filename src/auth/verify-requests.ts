/**
 * The gateway's auth requests, all answered on one subscription.
 *
 * nats.js's `nc.request` makes, for every request, a timer and, once answered, an `Error` (the
 * rejection of its own settled request: `RequestError('cancelled')`, with a captured stack): in a
 * profile of a gateway while sessions connect (BENCHMARKS.md, issue 15) the constructor alone was
 * 2.3 % of the node's time. Here a request is a core publish with a reply subject and one map
 * entry: one wildcard subscription under the connection's inbox prefix (the prefix nats.js's own
 * requests use, so the bus permissions do not change: src/bus/permissions.ts) receives every
 * verdict, and one timer fails the requests not answered in time. The same pattern as
 * src/durable/pub-acks.ts.
 *
 * The answers are what `requestVerdict` in client.ts made of `nc.request`: the service's verdict,
 * or `unavailable` with the failure kind the breaker needs (no responders, timeout, other).
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { subjects } from '../subjects.ts';
import { verdictOf, unavailable, type RemoteVerdict } from './client.ts';

interface Waiting {
  settle: (verdict: RemoteVerdict) => void;
  /** When to give up, `performance.now()` milliseconds. */
  deadline: number;
}

export class VerifyRequests {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  /** `<inbox>.`: a verdict's subject is this and the request's token. */
  readonly #inbox: string;
  readonly #sub: Subscription;
  /** In the order asked, which is also deadline order (one timeout for all). */
  readonly #waiting = new Map<string, Waiting>();
  #next = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed: RemoteVerdict | undefined;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    // The connection's inbox prefix (a role's, see src/bus/permissions.ts), as nats.js's requests use.
    const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#inbox = `${createInbox(prefix)}.`;
    this.#sub = nc.subscribe(`${this.#inbox}*`, { callback: (err, msg) => this.#answer(err, msg) });
    void this.#sub.closed.then(
      () => this.#failAll(unavailable('error', 'auth request failed')),
      () => this.#failAll(unavailable('error', 'auth request failed')),
    );
  }

  /** Asks the auth service (its queue group) for its verdict on one token. Never rejects. */
  verdict(token: string): Promise<RemoteVerdict> {
    if (this.#closed) return Promise.resolve(this.#closed);
    const id = (this.#next++).toString(36);
    return new Promise<RemoteVerdict>((settle) => {
      try {
        this.#nc.publish(subjects.authVerify, JSON.stringify({ token }), { reply: this.#inbox + id });
      } catch {
        settle(unavailable('error', 'auth request failed'));
        return;
      }
      this.#waiting.set(id, { settle, deadline: performance.now() + this.#timeoutMs });
      this.#timer ??= setTimeout(() => this.#expire(), this.#timeoutMs);
    });
  }

  /** Stops listening; requests still waiting fail as `unavailable`. */
  close(): void {
    if (!this.#nc.isClosed()) this.#sub.unsubscribe();
    this.#failAll(unavailable('error', 'auth request failed'));
  }

  #answer(err: Error | null, msg: Msg): void {
    if (err) {
      // The subscription itself failed (e.g. a permissions violation): nothing will be answered.
      this.#failAll(unavailable('error', 'auth request failed'));
      return;
    }
    const id = msg.subject.slice(this.#inbox.length);
    const waiting = this.#waiting.get(id);
    // An answer after its request timed out: the caller was already told.
    if (!waiting) return;
    this.#waiting.delete(id);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      // The server's answer when nobody listens on the subject (nats.js: a no-responders error).
      waiting.settle(unavailable('noResponders', 'no auth service responders'));
      return;
    }
    waiting.settle(verdictOf(msg));
  }

  /** Fails the requests whose time is up; re-arms for the next one. */
  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const [id, waiting] of this.#waiting) {
      if (waiting.deadline > now) {
        this.#timer = setTimeout(() => this.#expire(), waiting.deadline - now + 1);
        return;
      }
      this.#waiting.delete(id);
      waiting.settle(unavailable('timeout', 'auth request timed out'));
    }
  }

  #failAll(verdict: RemoteVerdict): void {
    this.#closed = verdict;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) w.settle(verdict);
  }
}

