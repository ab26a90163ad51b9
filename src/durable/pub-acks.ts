/**
 * JetStream publishes and their acknowledgements (PubAck), all answered on one subscription.
 *
 * nats.js's `js.publish` makes, for every publish, a request object with its own timer and
 * promise race, a header block even when there is no header, and an `Error` object (the
 * rejection of its own request once it is answered): about a quarter of the sending gateway's
 * durable cost per message in a profile of `npm run bench` (BENCHMARKS.md). Here a publish is a
 * core publish with a reply subject and one map entry, on the requests shared with the auth
 * requests (src/bus/inbox-requests.ts).
 *
 * The answers are what `js.publish` gives: `{stream, seq, duplicate}` or a failure. A failure
 * (no answer in time, an error answer, no JetStream responding, the connection closed) means the
 * message may or may not be stored, exactly as before; callers decide nothing from its text.
 */
import { headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { InboxRequests, NoAnswer, isNoResponders } from '../bus/inbox-requests.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { errorSummary, limitedLog, type LimitedLog } from '../bounded-log.ts';
import { silentLogger, type Logger } from '../log.ts';

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
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
    return failure(isNoResponders(msg) ? 'no stream answered (no responders)' : 'the stream answered nothing');
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
  readonly #requests: InboxRequests;
  readonly #timeoutMs: number;
  /** Answers that were no PubAck: one bounded line each. */
  readonly #report: LimitedLog;

  constructor(nc: NatsConnection, timeoutMs: number, log: Logger = silentLogger) {
    this.#requests = new InboxRequests(nc, timeoutMs);
    this.#timeoutMs = timeoutMs;
    this.#report = limitedLog(log);
  }

  /** Stores `payload` on `subject` (a stream's subject); `msgId` deduplicates (`Nats-Msg-Id`). */
  publish(subject: string, payload: string | Uint8Array, msgId?: string): Promise<PubAck> {
    let h;
    if (msgId !== undefined) {
      h = headers();
      h.set('Nats-Msg-Id', msgId);
    }
    return this.#requests.request(subject, payload, h).then(
      (msg) => {
        // Whatever arrived (a role that may publish into this inbox can put anything here), the
        // publish is answered once: an answer that is no PubAck fails it.
        let answer: PubAck | Error;
        try {
          answer = readPubAck(msg);
        } catch (readErr) {
          answer = failure(`${NOT_UNDERSTOOD} readable`, readErr);
        }
        if (answer instanceof Error) {
          if (answer.message.startsWith(NOT_UNDERSTOOD)) {
            this.#report('warn', { error: errorSummary(answer) }, 'pub ack not understood');
          }
          throw answer;
        }
        return answer;
      },
      (err: unknown) => {
        if (err instanceof NoAnswer && err.kind === 'timeout') {
          throw failure(`no acknowledgement from the stream within ${this.#timeoutMs} ms`);
        }
        if (err instanceof NoAnswer && err.kind === 'publish') throw failure('the message could not be published', err.cause);
        throw failure('the NATS connection closed before the stream answered', err);
      },
    );
  }
}
