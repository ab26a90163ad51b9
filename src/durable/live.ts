/**
 * The live path of durable delivery on one node: the messages a stream republishes to the live
 * subjects arrive with their stream sequence (`Nats-Sequence`) and the previous sequence of the
 * same destination (`Nats-Last-Sequence`). Per subject the node keeps the last sequence it passed
 * on; a message whose previous one is newer than that means the node missed something (a NATS
 * reconnect, a slow consumer): the subject pauses, the missing messages are read from the stream
 * leader and passed on in order, then what arrived meanwhile. A message at or below the last
 * sequence is a repeat and is dropped. After a reconnect, `resync` asks the leader for the newest
 * sequence of every subject and catches up the same way, so a quiet destination is not skipped
 * either. A read that fails is asked again for a few seconds (a leader election after a
 * reconnect); when catching up still fails, `lost` is told the subject: its sessions must resume.
 *
 * Messages without a sequence (ephemeral delivery) pass through untouched.
 */
import type { Msg } from '@nats-io/nats-core';
import type { Logger } from '../log.ts';
import { errorSummary, limitedLog } from '../bounded-log.ts';
import type { DurableStore } from './store.ts';
import { storedOf } from './streams.ts';

/** Passes one message on to the subject's sessions; `seq` is 0 for an ephemeral message. */
export type Emit = (subject: string, seq: number, data: Uint8Array) => void;

interface Queued {
  seq: number;
  prev: number;
  data: Uint8Array;
}

interface Track {
  /** The last sequence passed on (or a session's barrier, `started`); undefined until then. */
  last: number | undefined;
  /** While catching up: what arrived meanwhile, in order. */
  backlog: Queued[] | undefined;
}

/** A RePublish header: its name, and its line as it appears in the header block. */
interface SequenceHeader {
  name: string;
  line: Buffer;
}
const SEQUENCE: SequenceHeader = { name: 'Nats-Sequence', line: Buffer.from('\r\nNats-Sequence:') };
const LAST_SEQUENCE: SequenceHeader = { name: 'Nats-Last-Sequence', line: Buffer.from('\r\nNats-Last-Sequence:') };
const CR = 0x0d;
const SPACE = 0x20;

/** The header block nats.js keeps undecoded (MsgImpl's `_rdata` up to `_msg.hdr`), if it is there. */
function headerBlock(msg: Msg): Buffer | null | undefined {
  const impl = msg as unknown as { _msg?: { hdr?: unknown }; _rdata?: unknown };
  const length = impl._msg?.hdr;
  if (typeof length !== 'number' || !(impl._rdata instanceof Uint8Array)) return undefined;
  if (length < 0) return null;
  const data = impl._rdata;
  return Buffer.from(data.buffer, data.byteOffset, Math.min(length, data.length));
}

/**
 * A RePublish sequence header's value: undefined when absent, NaN when not a number. Read from the
 * raw header block (a byte search), not `msg.headers`, which decodes every header into a map for
 * each message: a few microseconds per message on every node (BENCHMARKS.md).
 */
function sequenceHeader(msg: Msg, header: SequenceHeader): number | undefined {
  const block = headerBlock(msg);
  if (block === null) return undefined;
  if (block === undefined) {
    // nats.js keeps its message differently: the public, decoding way.
    const value = msg.headers?.get(header.name);
    return value ? Number(value) : undefined;
  }
  const at = block.indexOf(header.line);
  if (at < 0) return undefined;
  let i = at + header.line.length;
  while (i < block.length && block[i] === SPACE) i++;
  let value = 0;
  let digits = 0;
  for (; i < block.length && block[i] !== CR && block[i] !== SPACE; i++, digits++) {
    const d = block[i]! - 0x30;
    if (d < 0 || d > 9 || digits > 16) return NaN;
    value = value * 10 + d;
  }
  return digits === 0 ? NaN : value;
}

/** The longest backlog one subject may queue while catching up; past it, the subject is lost. */
const MAX_BACKLOG = 10_000;
/** Subjects checked at once by `resync`. */
const RESYNC_CONCURRENCY = 16;
/**
 * A read of the stream that fails is asked again after these pauses before the subject is given
 * up: right after a NATS reconnect the stream is often still electing its leader, and giving up
 * at once would close every session of the subject with 4009, all reconnecting together.
 */
const READ_RETRY_MS = [250, 500, 1000, 2000];

/** `read`, asked again after each of `pauses` while it fails; the last failure is thrown. */
async function withRetries<T>(read: () => Promise<T>, pauses: readonly number[] = READ_RETRY_MS): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      const pause = pauses[attempt];
      if (pause === undefined) throw err;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

export class LiveSequencer {
  readonly #store: DurableStore;
  readonly #emit: Emit;
  readonly #lost: (subject: string) => void;
  readonly #tracks = new Map<string, Track>();
  readonly #failed: ReturnType<typeof limitedLog>;

  constructor(store: DurableStore, emit: Emit, lost: (subject: string) => void, log: Logger) {
    this.#store = store;
    this.#emit = emit;
    this.#lost = lost;
    this.#failed = limitedLog(log);
  }

  /** One message heard on the live subject `subject`. */
  accept(subject: string, msg: Msg): void {
    const seq = sequenceHeader(msg, SEQUENCE);
    if (seq === undefined) {
      this.#emit(subject, 0, msg.data);
      return;
    }
    const prev = sequenceHeader(msg, LAST_SEQUENCE) ?? 0;
    if (!Number.isSafeInteger(seq) || seq < 1 || !Number.isSafeInteger(prev) || prev < 0) return;
    let track = this.#tracks.get(subject);
    if (!track) this.#tracks.set(subject, (track = { last: undefined, backlog: undefined }));
    if (track.backlog) {
      if (track.backlog.length >= MAX_BACKLOG) return this.#lose(subject, track);
      track.backlog.push({ seq, prev, data: msg.data });
      return;
    }
    if (track.last !== undefined && seq <= track.last) return;
    if (track.last !== undefined && prev > track.last) {
      track.backlog = [{ seq, prev, data: msg.data }];
      void this.#catchUp(subject, track);
      return;
    }
    track.last = seq;
    this.#emit(subject, seq, msg.data);
  }

  /**
   * A barrier read for a session that just joined `subject` (resume.ts) found `top`, the newest
   * sequence the stream had for it, after the node's subscription was in place: everything after
   * `top` is republished to this node. A subject the node has passed nothing on for yet starts
   * from there, so that a republish it misses later (a NATS reconnect) is noticed as a gap, from
   * the next message's `Nats-Last-Sequence` or by `resync`, instead of going unseen.
   */
  started(subject: string, top: number): void {
    let track = this.#tracks.get(subject);
    if (!track) this.#tracks.set(subject, (track = { last: undefined, backlog: undefined }));
    if (track.last === undefined && !track.backlog) track.last = top;
  }

  /** The node no longer listens on `subject`. */
  forget(subject: string): void {
    this.#tracks.delete(subject);
  }

  /** The last sequence passed on for `subject`, if any. */
  last(subject: string): number | undefined {
    return this.#tracks.get(subject)?.last;
  }

  /** After a NATS reconnect: catches up every subject whose newest message is past what it passed on. */
  async resync(): Promise<void> {
    const subjects = [...this.#tracks.keys()];
    const work = async () => {
      for (let subject = subjects.pop(); subject !== undefined; subject = subjects.pop()) {
        const track = this.#tracks.get(subject);
        const where = storedOf(subject);
        if (!track || track.backlog || track.last === undefined || !where) continue;
        try {
          const top = await withRetries(() => this.#store.lastSeq(where.kind, where.stored));
          if (top > track.last && !track.backlog && this.#tracks.get(subject) === track) {
            track.backlog = [];
            await this.#catchUp(subject, track, top);
          }
        } catch (err) {
          this.#failed('warn', { subject, error: errorSummary(err) }, 'resync failed');
          if (this.#tracks.get(subject) === track) this.#lose(subject, track);
        }
      }
    };
    await Promise.all(Array.from({ length: RESYNC_CONCURRENCY }, work));
  }

  /** Reads what the node missed from the stream, then drains the backlog (up to `to` at least). */
  async #catchUp(subject: string, track: Track, to = 0): Promise<void> {
    const where = storedOf(subject);
    try {
      if (!where) throw new Error('not a durable subject');
      for (;;) {
        const head = track.backlog![0];
        const target = head ? (head.prev > track.last! ? head.prev : 0) : to > track.last! ? to : 0;
        if (target > 0) {
          const from = track.last! + 1;
          const missed = await withRetries(() => this.#store.range(where.kind, where.stored, from, target));
          if (this.#tracks.get(subject) !== track) return;
          for (const m of missed) {
            if (m.seq <= track.last!) continue;
            track.last = m.seq;
            this.#emit(subject, m.seq, m.data);
          }
          // Gone from the stream (retention) before it could be read: the sessions must resume.
          if (track.last! < target) throw new Error('missed messages are no longer retained');
        }
        const next = track.backlog!.shift();
        if (!next) break;
        if (next.seq <= track.last!) continue;
        if (next.prev > track.last!) {
          track.backlog!.unshift(next);
          continue;
        }
        track.last = next.seq;
        this.#emit(subject, next.seq, next.data);
      }
      track.backlog = undefined;
    } catch (err) {
      this.#failed('warn', { subject, error: errorSummary(err) }, 'catching up failed');
      if (this.#tracks.get(subject) === track) this.#lose(subject, track);
    }
  }

  #lose(subject: string, track: Track): void {
    track.backlog = undefined;
    track.last = undefined;
    this.#lost(subject);
  }
}
