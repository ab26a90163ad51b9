/**
 * Delivery on one gateway node, in either mode, as the session effects and the node's NATS
 * subscriptions use it: publishing (`publisher`), passing live messages to local sessions
 * (`live`, with the durable live path's gap detection and `pos`), resuming a destination for a
 * session (`join`), and history pages (`history`).
 *
 * A session's durable state (its held live messages while it resumes, and its send order) is
 * kept here, in weak maps keyed by the session, so that session.ts only calls in.
 */
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import type { FrameId } from '../../machines/connection.machine.ts';
import { decodeChatMessage, type ServerFrame } from '../gateway/codec.ts';
import { relay } from '../gateway/relay.ts';
import type { Logger } from '../log.ts';
import { limitedLog } from '../bounded-log.ts';
import { subjects } from '../subjects.ts';
import { LiveSequencer } from './live.ts';
import { SendOrder, createPublisher, type ChatMessage, type DeliveryMode, type Published, type Publisher } from './publish.ts';
import { Hold, resumeFrom, storedFrame, withPosition, type Resumed } from './resume.ts';
import { DurableStore } from './store.ts';
import { storedOf, type StreamOptions } from './streams.ts';

/** A local session as delivery sees it. */
export interface DeliveryMember {
  readonly id: string;
  /** Writes one text frame; false when the socket is gone or too slow. */
  write(data: string | Buffer, type: ServerFrame['type'] | 'message' | 'history' | 'signal'): boolean;
  /** The node could not keep this session's stream whole (or its hold overflowed): close 4009. */
  lost(): void;
}

export interface DeliveryOptions {
  nc: NatsConnection;
  mode: DeliveryMode;
  history?: StreamOptions & { publishTimeoutMs?: number };
  /** Resolves once the server has everything published so far (ephemeral acks). */
  flush: () => Promise<void>;
  /** The local members of a live subject now. */
  members: (subject: string) => Iterable<DeliveryMember> | undefined;
  /** Counts a delivered message (first local write of each). */
  delivered?: (publishedAtMs: number) => void;
  log: Logger;
}

/** Live messages a session may hold while it resumes one destination; more closes it with 4009. */
const MAX_HELD = 10_000;

export class Delivery {
  readonly mode: DeliveryMode;
  readonly publisher: Publisher;
  readonly store: DurableStore | undefined;
  readonly sequencer: LiveSequencer | undefined;
  readonly #options: DeliveryOptions;
  readonly #holds = new WeakMap<DeliveryMember, Map<string, Hold>>();
  readonly #orders = new WeakMap<DeliveryMember, SendOrder>();
  readonly #malformed: ReturnType<typeof limitedLog>;

  private constructor(options: DeliveryOptions, store: DurableStore | undefined) {
    this.#options = options;
    this.mode = options.mode;
    this.store = store;
    this.publisher = createPublisher({ nc: options.nc, store, flush: options.flush });
    this.#malformed = limitedLog(options.log);
    this.sequencer = store
      ? new LiveSequencer(store, (subject, seq, data) => this.#emit(subject, seq, data), (subject) => this.#lose(subject), options.log)
      : undefined;
  }

  /** With `mode: 'durable'`, makes sure the streams exist first. */
  static async start(options: DeliveryOptions): Promise<Delivery> {
    const store = options.mode === 'durable' ? await DurableStore.open(options.nc, options.history ?? {}, options.log) : undefined;
    return new Delivery(options, store);
  }

  /** One message heard on a live subject this node subscribes to. */
  live(subject: string, msg: Msg): void {
    if (this.sequencer) this.sequencer.accept(subject, msg);
    else this.#emit(subject, 0, msg.data);
  }

  /** The node stopped listening on `subject`. */
  released(subject: string): void {
    this.sequencer?.forget(subject);
  }

  /** After a NATS reconnect: catch up what the node may have missed. */
  resync(): Promise<void> {
    return this.sequencer?.resync() ?? Promise.resolve();
  }

  /**
   * Publishes one chat message for `member` (a session; undefined for the publish API): in
   * durable mode after that sender's earlier ones have been stored.
   */
  publish(member: DeliveryMember | undefined, message: ChatMessage): Promise<Published> {
    if (!member || !this.store) return this.publisher.publishChat(message);
    let order = this.#orders.get(member);
    if (!order) this.#orders.set(member, (order = new SendOrder()));
    return order.run(() => this.publisher.publishChat(message));
  }

  /**
   * Makes `member` receive `live` (a user or room subject) through `subscribe`. In durable
   * delivery every join reads the barrier (resume.ts): `pos` is the destination's newest position
   * then (for an empty one the stream's last position: every message it gets later comes after
   * it), and live messages come only after it; with `since`, the
   * replay of what came after `since` up to the barrier. Both come back to be written by `flush`:
   * the replay, then `between` (the welcome is written before, the join's ack is `between`), then
   * what arrived live meanwhile. When it fails nothing is written and nothing is held: the
   * caller undoes the subscription and answers `unavailable`, so the member is never left
   * joined without its replay.
   */
  async join(
    member: DeliveryMember,
    live: string,
    since: string | undefined,
    subscribe: () => Promise<void>,
  ): Promise<{ recovered?: boolean; pos?: string; flush: (between?: () => void) => void }> {
    const where = storedOf(live);
    if (!this.store || !where) {
      await subscribe();
      return since === undefined ? { flush: (between) => between?.() } : { recovered: false, flush: (between) => between?.() };
    }
    const store = this.store;
    const hold = new Hold(MAX_HELD);
    let holds = this.#holds.get(member);
    if (!holds) this.#holds.set(member, (holds = new Map()));
    holds.set(live, hold);
    const unhold = () => {
      if (holds.get(live) === hold) holds.delete(live);
    };
    let resumed: Resumed;
    try {
      await subscribe();
      resumed =
        since === undefined
          ? { recovered: false, ...(await store.barrier(where.kind, where.stored)), frames: [] }
          : await resumeFrom(store, where.kind, where.stored, since);
    } catch (err) {
      unhold();
      throw err;
    }
    this.sequencer?.started(live, resumed.top);
    // The replay, then `between` (the join's ack), then what arrived live meanwhile.
    const flush = (between?: () => void) => {
      unhold();
      if (hold.overflowed) return member.lost();
      const { replay, live: held } = hold.split(resumed);
      for (const frame of replay) member.write(frame, 'message');
      between?.();
      for (const frame of held) member.write(frame, 'message');
    };
    return {
      ...(since === undefined ? {} : { recovered: resumed.recovered }),
      pos: store.position(where.kind, resumed.pos),
      flush,
    };
  }

  /** Forgets a member that left `live` (or every subject when undefined). */
  leave(member: DeliveryMember, live?: string): void {
    if (live === undefined) this.#holds.delete(member);
    else this.#holds.get(member)?.delete(live);
  }

  /**
   * A `history` frame's text: up to `limit` stored messages of `user`'s inbox or of `room` before
   * `before`, oldest first. Undefined when `before` is not a position of that destination's stream.
   */
  async history(
    id: FrameId,
    target: { user: string } | { room: string },
    before: string | undefined,
    limit: number,
  ): Promise<string | undefined> {
    const store = this.store!;
    const kind = 'user' in target ? 'user' : 'room';
    const stored = 'user' in target ? subjects.storedUser(target.user) : subjects.storedRoom(target.room);
    const beforeSeq = before === undefined ? undefined : store.sequenceOf(kind, before);
    if (before !== undefined && beforeSeq === undefined) return undefined;
    const page = await store.history(kind, stored, beforeSeq, limit);
    const frames = page.messages.map((m) => storedFrame(store, kind, m)).filter((f) => f !== undefined);
    return `{"type":"history","id":${JSON.stringify(id)},"messages":[${frames.join(',')}],"more":${page.more}}`;
  }

  /** Passes one message of `subject` on to its local sessions, with `pos` in durable delivery. */
  #emit(subject: string, seq: number, data: Uint8Array): void {
    const message = decodeChatMessage(data);
    if (!message) {
      this.#malformed('warn', { bytes: data.length }, 'malformed chat message dropped');
      return;
    }
    // A signal (signals.ts) is never stored: no `pos`, and never held for a resume or replayed.
    if (message.type === 'signal') {
      for (const member of this.#options.members(subject) ?? []) {
        if (member.id !== message.origin) member.write(message.frame, 'signal');
      }
      return;
    }
    let frame: Buffer | undefined = message.frame;
    if (seq > 0 && this.store) {
      const where = storedOf(subject);
      frame = where && withPosition(message.frame, this.store.position(where.kind, seq));
      if (!frame) {
        this.#malformed('warn', { bytes: data.length }, 'malformed chat message dropped');
        return;
      }
    }
    const held = frame;
    const divert = (member: DeliveryMember) => {
      const hold = this.#holds.get(member)?.get(subject);
      hold?.push(seq, held);
      return hold !== undefined;
    };
    relay(this.#options.members(subject) ?? [], message, frame, divert, this.#options.delivered);
  }

  /** The node could not catch up `subject`: its sessions must resume. */
  #lose(subject: string): void {
    for (const member of [...(this.#options.members(subject) ?? [])]) member.lost();
  }
}
