/**
 * The outbox: every `send` waits here, with its idempotency key, until the node acknowledges it.
 * Sends go out in order, at most `maxInFlight` at a time. When the socket is lost, the ones in
 * flight go back to waiting and are sent again, in the same order and with the same key, once the
 * client is open again (after its rooms are re-joined): with durable delivery the node answers a
 * repeated key with the first answer and delivers nothing twice. Bounded: `maxOutbox` entries,
 * and each one fails with `send_timeout` when it is not acknowledged within its deadline.
 */
import type { Destination, FrameId, Position, SendFrame } from '../protocol.ts';
import { ClientError, ClientErrorCode } from './errors.ts';

export interface SendResult {
  msgId: string;
  /** The message's position in its destination (durable delivery). */
  pos?: Position;
}

interface Entry {
  key: string;
  to: Destination;
  body: unknown;
  /** The id of the frame in flight, while it is. */
  inFlight: FrameId | undefined;
  timer: ReturnType<typeof setTimeout>;
  resolve(result: SendResult): void;
  reject(error: ClientError): void;
}

export interface OutboxOptions {
  /** Unacknowledged sends held at most; one more is refused with `outbox_full`. @default 1000 */
  maxOutbox: number;
  /** Sends in flight at once. @default 32 */
  maxInFlight: number;
  /** How long a send may wait for its ack, across reconnects, before `send_timeout`. @default 30000 */
  sendTimeoutMs: number;
}

export const defaultOutboxOptions: Readonly<OutboxOptions> = Object.freeze({
  maxOutbox: 1000,
  maxInFlight: 32,
  sendTimeoutMs: 30_000,
});

export class Outbox {
  readonly #options: OutboxOptions;
  readonly #entries: Entry[] = [];
  readonly #byFrame = new Map<FrameId, Entry>();
  readonly #newKey: () => string;
  /** Writes a frame on the open socket; returns its id, or undefined when it cannot now. */
  readonly #write: (frame: Omit<SendFrame, 'id'>) => FrameId | undefined;
  #ready = false;
  #pausedUntil = 0;
  #resume: ReturnType<typeof setTimeout> | undefined;

  constructor(
    options: OutboxOptions,
    newKey: () => string,
    write: (frame: Omit<SendFrame, 'id'>) => FrameId | undefined,
  ) {
    this.#options = options;
    this.#newKey = newKey;
    this.#write = write;
  }

  get size(): number {
    return this.#entries.length;
  }

  send(to: Destination, body: unknown): Promise<SendResult> {
    if (this.#entries.length >= this.#options.maxOutbox) {
      return Promise.reject(new ClientError(ClientErrorCode.outboxFull, `the outbox holds ${this.#options.maxOutbox} sends`));
    }
    return new Promise<SendResult>((resolve, reject) => {
      const entry: Entry = {
        key: this.#newKey(),
        to,
        body,
        inFlight: undefined,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#remove(entry);
          reject(new ClientError(ClientErrorCode.sendTimeout, `not acknowledged within ${this.#options.sendTimeoutMs} ms`));
          this.pump();
        }, this.#options.sendTimeoutMs),
      };
      this.#entries.push(entry);
      this.pump();
    });
  }

  /** The socket is usable (open, rooms re-joined): send what waits. */
  ready(): void {
    this.#ready = true;
    this.pump();
  }

  /** The socket is gone: whatever was in flight waits again, in its place. */
  suspend(): void {
    this.#ready = false;
    for (const entry of this.#entries) {
      if (entry.inFlight !== undefined) this.#byFrame.delete(entry.inFlight);
      entry.inFlight = undefined;
    }
  }

  /**
   * Sends waiting entries, in order, up to `maxInFlight` in flight, and at most one per
   * destination: a send that fails and is retried (`unavailable` while a NATS server is down,
   * `rate_limited`) would otherwise be stored after the one behind it. Sends to different
   * destinations still go out together.
   */
  pump(now = Date.now()): void {
    if (!this.#ready) return;
    if (now < this.#pausedUntil) {
      this.#resume ??= setTimeout(() => {
        this.#resume = undefined;
        this.pump();
      }, this.#pausedUntil - now);
      return;
    }
    let inFlight = this.#byFrame.size;
    /** Destinations with a send in flight, or one waiting ahead in the queue: nothing more to them now. */
    const busy = new Set<string>();
    for (const entry of this.#entries) {
      if (inFlight >= this.#options.maxInFlight) break;
      const destination = 'room' in entry.to ? `room:${entry.to.room}` : `user:${entry.to.user}`;
      if (busy.has(destination)) continue;
      busy.add(destination);
      if (entry.inFlight !== undefined) continue;
      const id = this.#write({ type: 'send', to: entry.to, body: entry.body, key: entry.key });
      if (id === undefined) return;
      entry.inFlight = id;
      this.#byFrame.set(id, entry);
      inFlight++;
    }
  }

  /** The room the send in flight as `id` goes to, if it goes to a room. */
  roomOf(id: FrameId): string | undefined {
    const to = this.#byFrame.get(id)?.to;
    return to !== undefined && 'room' in to ? to.room : undefined;
  }

  /** Whether `id` is a send of this outbox. */
  owns(id: FrameId): boolean {
    return this.#byFrame.has(id);
  }

  acked(id: FrameId, result: SendResult): void {
    const entry = this.#byFrame.get(id);
    if (!entry) return;
    this.#remove(entry);
    entry.resolve(result);
    this.pump();
  }

  /**
   * The node refused a send. `rate_limited` and `unavailable` wait and go again (the same key, so
   * never twice); anything else fails the send.
   */
  refused(id: FrameId, error: ClientError): void {
    const entry = this.#byFrame.get(id);
    if (!entry) return;
    this.#byFrame.delete(id);
    entry.inFlight = undefined;
    if (error.code === 'rate_limited' || error.code === 'unavailable') {
      this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + (error.retryAfterMs ?? 500));
      this.pump();
      return;
    }
    this.#remove(entry);
    entry.reject(error);
    this.pump();
  }

  /** Fails every entry (the client closed for good). */
  fail(error: ClientError): void {
    for (const entry of this.#entries.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.#byFrame.clear();
    clearTimeout(this.#resume);
    this.#resume = undefined;
  }

  #remove(entry: Entry): void {
    clearTimeout(entry.timer);
    if (entry.inFlight !== undefined) this.#byFrame.delete(entry.inFlight);
    const at = this.#entries.indexOf(entry);
    if (at >= 0) this.#entries.splice(at, 1);
  }
}
