/**
 * The message store of durable delivery: JetStream publishes into the two streams, and the reads
 * that resume and history need. Every read is a `STREAM.MSG.GET`, which only the stream leader
 * answers (never a direct get, whose follower copies may lag): `last_by_subj` is the resume
 * barrier, `next_by_subj` walks one destination forward; and `STREAM.INFO`, which also only the
 * leader answers (a member of a group without a leader may answer with what it has: such an
 * answer is refused), for the stream's first and last sequence. See docs/durability.md.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import {
  jetstreamManager,
  type JetStreamManager,
  type MsgRequest,
  type StoredMsg,
} from '@nats-io/jetstream';
import type { Logger } from '../log.ts';
import { jserrors } from '@nats-io/jetstream/internal';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { durableStreams, ensureStreams, streamDefaults, type Epochs, type StreamKind, type StreamOptions } from './streams.ts';
import { decodePosition, encodePosition, streamEpoch } from './positions.ts';
import { PubAcks, type PubAck } from './pub-acks.ts';

export interface StoreOptions extends StreamOptions {
  /** How long a JetStream publish may wait for its acknowledgement. @default 5000 */
  publishTimeoutMs?: number;
}

/** Where a session starts listening to one destination (`barrier`). */
export interface Barrier {
  /** The destination's newest sequence, 0 when it holds none: its messages after it come live. */
  top: number;
  /**
   * The sequence of the `pos` the session is given: `top`, or for an empty destination the
   * stream's last sequence (0 for an empty stream); every later message of it is after this.
   */
  pos: number;
}

/** A stream's state as its leader reports it (`STREAM.INFO`). */
export interface StreamState {
  /** The epoch of the stream as it is now (another one than `epochs` when it was made anew). */
  epoch: string;
  /** The oldest sequence it holds (last + 1 when it holds none; 0 before its first message). */
  first: number;
  last: number;
  /** Messages held on the subject asked about. */
  count: number;
  /** Its per-subject limit (`max_msgs_per_subject`); 0 or less: none. */
  maxPerSubject: number;
  /**
   * Whether the stream may have removed a message for its age: false while the stream is younger
   * than its `max_age` (by a minute's margin for clocks), or when it has none.
   */
  mayHaveAgedOut: boolean;
}

/** A clock margin between this node and the NATS server, for `mayHaveAgedOut`. */
const AGE_MARGIN_MS = 60_000;

export class DurableStore {
  readonly epochs: Epochs;
  readonly maxPerTarget: number;
  readonly #acks: PubAcks;
  readonly #jsm: JetStreamManager;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, epochs: Epochs, options: StoreOptions, log: Logger) {
    this.#acks = new PubAcks(nc, options.publishTimeoutMs ?? 5000, log);
    this.#jsm = jsm;
    this.epochs = epochs;
    this.maxPerTarget = options.maxPerTarget ?? streamDefaults.maxPerTarget;
  }

  /** Makes sure both streams exist (see streams.ts) and reads their epochs. */
  static async open(nc: NatsConnection, options: StoreOptions, log: Logger): Promise<DurableStore> {
    const jsm = await jetstreamManager(nc).catch((err: unknown) => {
      if (!(err instanceof jserrors.JetStreamNotEnabled)) throw err;
      throw new ChatgateError(
        ChatgateErrorCode.noJetStream,
        'JetStream is not enabled on this NATS server: DELIVERY=durable needs it (nats-server -js, or chatgate nats), or set DELIVERY=ephemeral',
        { cause: err },
      );
    });
    const epochs = await ensureStreams(jsm, options, log);
    return new DurableStore(nc, jsm, epochs, options, log);
  }

  /**
   * Stores `payload` on `subject` (a stored subject of subjects.ts); `msgId` deduplicates.
   * Resolves with the PubAck (pub-acks.ts); a failure means it may or may not be stored.
   */
  publish(subject: string, payload: string | Uint8Array, msgId?: string): Promise<PubAck> {
    return this.#acks.publish(subject, payload, msgId);
  }

  position(kind: StreamKind, seq: number): string {
    return encodePosition(this.epochs[kind], seq);
  }

  /** The sequence in `pos` when it is a position of this stream's epoch; undefined otherwise. */
  sequenceOf(kind: StreamKind, pos: unknown): number | undefined {
    const p = decodePosition(pos);
    return p && p.epoch === this.epochs[kind] ? p.seq : undefined;
  }

  /** The sequence of the newest message on `subject`, 0 when it has none: a leader read. */
  async lastSeq(kind: StreamKind, subject: string): Promise<number> {
    const m = await this.#jsm.streams.getMessage(durableStreams[kind].name, { last_by_subj: subject });
    return m?.seq ?? 0;
  }

  /**
   * Where a session that listens to `subject` from now on starts: read after its subscription is
   * in place. A destination with messages starts at its newest; an empty one at the stream's last
   * sequence, read first and then checked against the destination again, so that a message
   * stored for it meanwhile (with a sequence up to that one, which it would not replay) is
   * found: the destination then starts at that message instead.
   */
  async barrier(kind: StreamKind, subject: string): Promise<Barrier> {
    const top = await this.lastSeq(kind, subject);
    if (top > 0) return { top, pos: top };
    const { last } = await this.state(kind);
    const again = await this.lastSeq(kind, subject);
    return again > 0 ? { top: again, pos: again } : { top: 0, pos: last };
  }

  /**
   * The stream's state, with the number of messages held on `subject` when given. Only the
   * leader's answer is taken: a member of a group without a leader answers with what it has,
   * which may lag; that is refused (code `message_store`), as a read that did not get through.
   */
  async state(kind: StreamKind, subject?: string): Promise<StreamState> {
    const name = durableStreams[kind].name;
    const info = await this.#jsm.streams.info(name, subject === undefined ? undefined : { subjects_filter: subject });
    if (info.cluster && !info.cluster.leader) {
      throw new ChatgateError(ChatgateErrorCode.messageStore, `stream ${name} has no leader`);
    }
    return {
      epoch: streamEpoch(info.config.name, info.created),
      first: info.state.first_seq,
      last: info.state.last_seq,
      count: subject === undefined ? 0 : (info.state.subjects?.[subject] ?? 0),
      maxPerSubject: info.config.max_msgs_per_subject,
      mayHaveAgedOut:
        info.config.max_age > 0 && Date.now() - Date.parse(info.created) > info.config.max_age / 1e6 - AGE_MARGIN_MS,
    };
  }

  /** The first message on `subject` at or after `seq`, or null. */
  next(kind: StreamKind, subject: string, seq: number): Promise<StoredMsg | null> {
    // STREAM.MSG.GET takes `next_by_subj` (nats-server 2.9: `JSApiMsgGetRequest.NextFor`); nats.js types only the others.
    const query = { seq: Math.max(1, seq), next_by_subj: subject } as unknown as MsgRequest;
    return this.#jsm.streams.getMessage(durableStreams[kind].name, query);
  }

  /** The messages on `subject` with `from <= seq <= to`, oldest first, at most `maxPerTarget`. */
  async range(kind: StreamKind, subject: string, from: number, to: number): Promise<StoredMsg[]> {
    const out: StoredMsg[] = [];
    for (let seq = from; seq <= to && out.length < this.maxPerTarget; ) {
      const m = await this.next(kind, subject, seq);
      if (!m || m.seq > to) break;
      out.push(m);
      seq = m.seq + 1;
    }
    return out;
  }

  /**
   * Up to `limit` messages on `subject` before sequence `before` (all when undefined), oldest
   * first, and whether older ones remain. Walks the destination from its oldest retained message
   * (at most `maxPerTarget`): nats-server 2.9 has no backward read.
   */
  async history(
    kind: StreamKind,
    subject: string,
    before: number | undefined,
    limit: number,
  ): Promise<{ messages: StoredMsg[]; more: boolean }> {
    const top = before === undefined ? await this.lastSeq(kind, subject) : before - 1;
    if (top < 1) return { messages: [], more: false };
    const all = await this.range(kind, subject, 1, top);
    return { messages: all.slice(-limit), more: all.length > limit };
  }
}
