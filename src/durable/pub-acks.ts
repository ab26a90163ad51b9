/**
 * JetStream publishes and their acknowledgements (PubAck), all answered on one subscription.
 *
 * nats.js's `js.publish` makes, for every publish, a request object with its own timer and
 * promise race, a header block even when there is no header, and an `Error` object (the
 * rejection of its own request once it is answered): about a quarter of the sending gateway's
 * durable cost per message in a profile of `npm run bench` (BENCHMARKS.md). Here a publish is a
 * core publish with a reply subject and one map entry: one wildcard subscription under the
 * connection's inbox prefix (the same prefix nats.js's own requests use, so the bus permissions do
 * not change) receives every PubAck, and one timer fails those not answered in time.
 *
 * The answers are what `js.publish` gives: `{stream, seq, duplicate}` or a failure. A failure
 * (no answer in time, an error answer, no JetStream responding, the connection closed) means the
 * message may or may not be stored, exactly as before; callers decide nothing from its text.
 */
import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { errorSummary, limitedLog, type LimitedLog } from '../bounded-log.ts';
import { silentLogger, type Logger } from '../log.ts';

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

interface Waiting {
  resolve: (ack: PubAck) => void;
  reject: (err: Error) => void;
  /** When to give up, `performance.now()` milliseconds. */
  deadline: number;
}

function failure(message: string, cause?: unknown): ChatgateError {
  return new ChatgateError(ChatgateErrorCode.messageStore, message, cause === undefined ? undefined : { cause });
}

/** How a failure starts when the answer was not a stream's (logged, within a budget). */
const NOT_UNDERSTOOD = 'the stream answered something that is not';

/**
 * One answer on a publish's reply subject as its PubAck, or the failure it means. May throw (a
 * malformed header block makes nats.js's `msg.headers` throw): the caller catches.
 */
function readPubAck(msg: Msg): PubAck | Error {
  if (msg.data.length === 0) {
    // 503: nothing listens on the stream's subject (no JetStream, or no stream leader right now).
    const code = msg.headers?.code;
    return failure(`no stream answered (status ${code ?? 'none'})`);
  }
  let ack: unknown;
  try {
    ack = JSON.parse(msg.string());
  } catch (parseErr) {
    return failure(`${NOT_UNDERSTOOD} JSON`, parseErr);
  }
  if (typeof ack !== 'object' || ack === null || Array.isArray(ack)) return failure(`${NOT_UNDERSTOOD} a JSON object`);
  const { stream, seq, duplicate, error } = ack as { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: unknown };
  if (error !== undefined && error !== null) {
    const e = typeof error === 'object' ? (error as { code?: unknown; description?: unknown }) : {};
    return failure(`the stream did not store the message: ${String(e.code)} ${String(e.description)}`.slice(0, 200));
  }
  if (typeof stream !== 'string' || !Number.isSafeInteger(seq) || (seq as number) < 1) {
    return failure(`${NOT_UNDERSTOOD} a stream and sequence`);
  }
  return { stream, seq: seq as number, duplicate: duplicate === true };
}

export class PubAcks {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  /** `<inbox>.`: a PubAck's subject is this and the publish's token. */
  readonly #inbox: string;
  readonly #sub: Subscription;
  /** In the order published, which is also deadline order (one timeout for all). */
  readonly #waiting = new Map<string, Waiting>();
  #next = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed: Error | undefined;
  /** Answers that were no PubAck: one bounded line each. */
  readonly #report: LimitedLog;

  constructor(nc: NatsConnection, timeoutMs: number, log: Logger = silentLogger) {
    this.#nc = nc;
    this.#report = limitedLog(log);
    this.#timeoutMs = timeoutMs;
    // The connection's inbox prefix (a role's, see src/bus/permissions.ts), as nats.js's requests use.
    const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#inbox = `${createInbox(prefix)}.`;
    this.#sub = nc.subscribe(`${this.#inbox}*`, { callback: (err, msg) => this.#answer(err, msg) });
    void this.#sub.closed.then(
      () => this.#failAll(failure('the NATS connection closed before the stream answered')),
      (err: unknown) => this.#failAll(failure('the PubAck subscription failed', err)),
    );
  }

  /** Stores `payload` on `subject` (a stream's subject); `msgId` deduplicates (`Nats-Msg-Id`). */
  publish(subject: string, payload: string | Uint8Array, msgId?: string): Promise<PubAck> {
    if (this.#closed) return Promise.reject(this.#closed);
    const token = (this.#next++).toString(36);
    return new Promise<PubAck>((resolve, reject) => {
      this.#waiting.set(token, { resolve, reject, deadline: performance.now() + this.#timeoutMs });
      try {
        const reply = this.#inbox + token;
        if (msgId === undefined) {
          this.#nc.publish(subject, payload, { reply });
        } else {
          const h = headers();
          h.set('Nats-Msg-Id', msgId);
          this.#nc.publish(subject, payload, { reply, headers: h });
        }
      } catch (err) {
        this.#waiting.delete(token);
        reject(failure('the message could not be published', err));
        return;
      }
      this.#timer ??= setTimeout(() => this.#expire(), this.#timeoutMs);
    });
  }

  #answer(err: Error | null, msg: Msg): void {
    if (err) {
      // The subscription itself failed (e.g. a permissions violation): nothing will be answered.
      this.#failAll(failure('the PubAck subscription failed', err));
      return;
    }
    const token = msg.subject.slice(this.#inbox.length);
    const waiting = this.#waiting.get(token);
    // An answer after its publish timed out: the caller was already told "maybe stored".
    if (!waiting) return;
    this.#waiting.delete(token);
    // Whatever arrived (a role that may publish into this inbox can put anything here), the
    // publish is answered, and nothing is thrown: a throw here would stop the connection's reader.
    let answer: PubAck | Error;
    try {
      answer = readPubAck(msg);
    } catch (readErr) {
      answer = failure('the stream answered something that is not a PubAck', readErr);
    }
    if (answer instanceof Error) {
      if (answer.message.startsWith(NOT_UNDERSTOOD)) {
        this.#report('warn', { error: errorSummary(answer) }, 'pub ack not understood');
      }
      waiting.reject(answer);
    } else {
      waiting.resolve(answer);
    }
  }

  /** Fails the publishes whose time is up; re-arms for the next one. */
  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const [token, waiting] of this.#waiting) {
      if (waiting.deadline > now) {
        this.#timer = setTimeout(() => this.#expire(), waiting.deadline - now + 1);
        return;
      }
      this.#waiting.delete(token);
      waiting.reject(failure(`no acknowledgement from the stream within ${this.#timeoutMs} ms`));
    }
  }

  #failAll(err: Error): void {
    this.#closed = err;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) w.reject(err);
  }
}
