/**
 * The one way a chat message is published, for a session's `send` and for the server-side
 * publish API alike: `publishChat`. With `DELIVERY=ephemeral` it is a core NATS publish to the
 * live subject, confirmed by a flush shared by everything published in the same tick. With
 * `DELIVERY=durable` it is a JetStream publish to the stored subject, confirmed by the stream's
 * acknowledgement (no flush); the stream republishes it to the live subject. A `key` makes it
 * idempotent: the same user's same key within the dedupe window is stored once, and every
 * attempt gets the first one's `msgId` and `pos`.
 *
 * `SendOrder` keeps one sender's messages in order across failures: its publishes go one after
 * another, and once one fails, those already queued behind it fail unpublished.
 */
import { createHash } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { nuid } from '@nats-io/nats-core';
import type { Destination } from '../../machines/connection.machine.ts';
import { encodeChatMessage } from '../gateway/codec.ts';
import { subjects } from '../subjects.ts';
import type { DurableStore } from './store.ts';

export type DeliveryMode = 'durable' | 'ephemeral';

export interface ChatMessage {
  from: string;
  to: Destination;
  body: unknown;
  /** The sending session: room messages skip it. Empty for none (user messages, the publish API). */
  origin?: string;
  /** Idempotency key, 1–64 characters (durable delivery only). */
  key?: string;
  /** Posted by the application's backend (the publish API): recipients see `"system": true`. */
  system?: boolean;
}

export interface Published {
  msgId: string;
  /** The message's position in its destination (durable delivery only). */
  pos?: string;
  /** A repeat of a key already stored: nothing was delivered again. */
  duplicate?: boolean;
}

export interface Publisher {
  readonly mode: DeliveryMode;
  publishChat(message: ChatMessage): Promise<Published>;
}

/**
 * The JetStream message id of a user's key: a digest, so keys of different users never meet.
 * The common form digests `<user> NUL <key>` in UTF-8, which is one-to-one only while the user id
 * has no NUL and the key no lone surrogate (UTF-8 makes each of those U+FFFD): `ann`+`x\0k` and
 * `ann\0x`+`k` would meet, and so would two keys of one user that differ in a lone surrogate.
 * Such a pair is digested in another form instead: a NUL byte first (which no UTF-8 user id
 * starts with, so the two forms never meet), the user's length, then both in UTF-16, which keeps
 * every code unit. The common form stays as it was, so a key retried across an upgrade still dedupes.
 */
export function dedupeId(user: string, key: string): string {
  if (user.length > 0 && !user.includes('\0') && key.isWellFormed()) {
    return createHash('sha256').update(user).update('\0').update(key).digest('base64url');
  }
  const length = Buffer.alloc(4);
  length.writeUInt32BE(user.length);
  return createHash('sha256')
    .update(Buffer.from([0]))
    .update(length)
    .update(Buffer.from(user, 'utf16le'))
    .update(Buffer.from(key, 'utf16le'))
    .digest('base64url');
}

/** The `message` frame's fields; `system` only when set, so a session's message has none. */
function frameOf(msgId: string, from: string, to: Destination, body: unknown, system: boolean | undefined) {
  const ts = Date.now();
  return system ? { msgId, from, to, body, ts, system: true as const } : { msgId, from, to, body, ts };
}

export function createPublisher(options: {
  nc: NatsConnection;
  /** Durable delivery when given. */
  store?: DurableStore;
  /** Resolves once the server has everything published so far (ephemeral acks). */
  flush: () => Promise<void>;
}): Publisher {
  const { nc, store, flush } = options;
  if (!store) {
    return {
      mode: 'ephemeral',
      async publishChat({ from, to, body, origin = '', system }) {
        const msgId = nuid.next();
        const subject = 'user' in to ? subjects.user(to.user) : subjects.room(to.room);
        nc.publish(subject, encodeChatMessage(origin, frameOf(msgId, from, to, body, system)));
        await flush();
        return { msgId };
      },
    };
  }
  return {
    mode: 'durable',
    async publishChat({ from, to, body, origin = '', key, system }) {
      const kind = 'user' in to ? 'user' : 'room';
      const subject = 'user' in to ? subjects.storedUser(to.user) : subjects.storedRoom(to.room);
      const dedupe = key === undefined ? undefined : dedupeId(from, key);
      // A keyed message's id derives from the key: a repeat is answered without reading the first.
      const msgId = dedupe === undefined ? nuid.next() : `k${dedupe.slice(0, 21)}`;
      const ack = await store.publish(subject, encodeChatMessage(origin, frameOf(msgId, from, to, body, system)), dedupe);
      const published: Published = { msgId, pos: store.position(kind, ack.seq) };
      if (ack.duplicate) published.duplicate = true;
      return published;
    },
  };
}

interface Queued {
  publish: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * One sender's publishes, one after another; after a failure, those queued behind it fail too.
 * The next publish starts in the same microtask as the previous one's acknowledgement, so it goes
 * out in the same write to NATS as the other sessions' publishes of that moment.
 */
export class SendOrder {
  readonly #queue: Queued[] = [];
  #busy = false;
  #failed = false;

  run<T>(publish: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const queued: Queued = { publish, resolve: resolve as (value: unknown) => void, reject };
      if (this.#busy) {
        this.#queue.push(queued);
        return;
      }
      this.#busy = true;
      this.#start(queued);
    });
  }

  #start(queued: Queued): void {
    let pending: Promise<unknown>;
    try {
      pending = queued.publish();
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (value) => {
        queued.resolve(value);
        this.#next();
      },
      (err: unknown) => {
        this.#failed = true;
        queued.reject(err);
        this.#next();
      },
    );
  }

  #next(): void {
    for (let queued = this.#queue.shift(); queued; queued = this.#queue.shift()) {
      if (!this.#failed) return this.#start(queued);
      queued.reject(new Error('an earlier send of this session failed'));
    }
    // Everything queued has settled: a new send starts afresh.
    this.#busy = false;
    this.#failed = false;
  }
}
