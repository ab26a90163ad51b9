/**
 * Requests whose answers all arrive on one subscription: what the gateway's JetStream publishes
 * (src/durable/pub-acks.ts) and its auth requests (src/auth/verify-requests.ts) share.
 *
 * nats.js's `nc.request` and `js.publish` make, for every request, a timer, a request object and,
 * once answered, an `Error` (the rejection of their own settled request, with a captured stack):
 * in profiles of `npm run bench` (BENCHMARKS.md) a quarter of the sending gateway's durable cost
 * per message and 2.3 % of its connect time. Here a request is a core publish with a reply subject
 * and one map entry: one wildcard subscription under the connection's inbox prefix (the prefix
 * nats.js's own requests use, so the bus permissions do not change: src/bus/permissions.ts)
 * receives every answer, and one timer fails the requests not answered in time.
 *
 * The subscription's callback reads nothing of an answer but its subject: the answer goes to its
 * request's promise as it came, and the caller reads it there. Whatever arrives (a role that may
 * publish into these inboxes can put anything there, a header block nats.js cannot parse
 * included), nothing is thrown in the callback, where a throw would stop the connection's reader.
 */
import { createInbox, type MsgHdrs, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';

/** Why a request got no answer: none in time, the subscription or connection ended, or the publish failed. */
export type NoAnswerKind = 'timeout' | 'closed' | 'publish';

export class NoAnswer extends Error {
  constructor(
    readonly kind: NoAnswerKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'NoAnswer';
  }
}

interface Waiting {
  resolve: (answer: Msg) => void;
  reject: (err: NoAnswer) => void;
  /** When to give up, `performance.now()` milliseconds. */
  deadline: number;
}

export class InboxRequests {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  /** `<inbox>.`: an answer's subject is this and the request's token. */
  readonly #inbox: string;
  readonly #sub: Subscription;
  /** In the order asked, which is also deadline order (one timeout for all). */
  readonly #waiting = new Map<string, Waiting>();
  #next = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed: NoAnswer | undefined;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    // The connection's inbox prefix (a role's, see src/bus/permissions.ts), as nats.js's requests use.
    const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#inbox = `${createInbox(prefix)}.`;
    this.#sub = nc.subscribe(`${this.#inbox}*`, { callback: (err, msg) => this.#answer(err, msg) });
    void this.#sub.closed.then(
      () => this.#failAll(new NoAnswer('closed', 'the NATS connection closed before the answer came')),
      (err: unknown) => this.#failAll(new NoAnswer('closed', 'the reply subscription failed', { cause: err })),
    );
  }

  /** Publishes `payload` on `subject` with a reply subject; resolves with the answer as it came. */
  request(subject: string, payload: string | Uint8Array, headers?: MsgHdrs): Promise<Msg> {
    if (this.#closed) return Promise.reject(this.#closed);
    const token = (this.#next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      try {
        this.#nc.publish(subject, payload, headers ? { reply: this.#inbox + token, headers } : { reply: this.#inbox + token });
      } catch (err) {
        reject(new NoAnswer('publish', 'the request could not be published', { cause: err }));
        return;
      }
      this.#waiting.set(token, { resolve, reject, deadline: performance.now() + this.#timeoutMs });
      this.#timer ??= setTimeout(() => this.#expire(), this.#timeoutMs);
    });
  }

  /** Stops listening; requests still waiting fail. */
  close(): void {
    if (!this.#nc.isClosed()) this.#sub.unsubscribe();
    this.#failAll(new NoAnswer('closed', 'closed'));
  }

  #answer(err: Error | null, msg: Msg): void {
    if (err) {
      // The subscription itself failed (e.g. a permissions violation): nothing will be answered.
      this.#failAll(new NoAnswer('closed', 'the reply subscription failed', { cause: err }));
      return;
    }
    const token = msg.subject.slice(this.#inbox.length);
    const waiting = this.#waiting.get(token);
    // An answer after its request timed out: the caller was already told.
    if (!waiting) return;
    this.#waiting.delete(token);
    waiting.resolve(msg);
  }

  /** Fails the requests whose time is up; re-arms for the next one. */
  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const [token, waiting] of this.#waiting) {
      if (waiting.deadline > now) {
        this.#timer = setTimeout(() => this.#expire(), waiting.deadline - now + 1);
        return;
      }
      this.#waiting.delete(token);
      waiting.reject(new NoAnswer('timeout', `no answer within ${this.#timeoutMs} ms`));
    }
  }

  #failAll(err: NoAnswer): void {
    this.#closed = err;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) w.reject(err);
  }
}

/**
 * Whether an empty answer is the server's "no responders" status (503): nobody listens on the
 * request's subject. Reading `msg.headers` throws on a malformed header block: the caller reads
 * this inside its own try.
 */
export function isNoResponders(msg: Msg): boolean {
  return msg.data.length === 0 && msg.headers?.code === 503;
}
