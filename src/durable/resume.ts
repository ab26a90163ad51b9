/**
 * Resume one destination for one session from a client's position (`since`), and the frames of
 * stored messages.
 *
 * The caller first subscribes the session to the live subject and holds its live messages
 * (`Hold`). Then the barrier: the newest sequence on the destination, read from the stream leader
 * (`top`). Every message after `top` was stored after the subscription was in place, so it comes
 * live; every message up to `top` is read from the stream. `recovered` is true only when the
 * message at `since` itself is still stored (limits remove a destination's messages only from its
 * oldest end, and the streams deny deletes, so nothing after it can be missing); then the replay
 * is every message after `since` up to `top`, and the held live messages after `top` follow it.
 * Otherwise (too old, another epoch, malformed, or ahead of the stream) nothing is replayed.
 */
import type { StoredMsg } from '@nats-io/jetstream';
import { decodeChatMessage } from '../gateway/codec.ts';
import type { DurableStore } from './store.ts';
import type { StreamKind } from './streams.ts';

export interface Resumed {
  recovered: boolean;
  /** The barrier: messages after it come live. */
  top: number;
  /** The replay, oldest first: frame bytes with their `pos`. */
  frames: Array<{ seq: number; frame: Buffer }>;
}

/** `{"type":"message",` as encodeChatMessage writes it: `pos` goes right after it. */
const FRAME_HEAD = Buffer.from('{"type":"message",');

/** A message frame with `pos` spliced in, once per message and node; undefined when not one. */
export function withPosition(frame: Buffer, pos: string): Buffer | undefined {
  if (frame.length <= FRAME_HEAD.length || !frame.subarray(0, FRAME_HEAD.length).equals(FRAME_HEAD)) return undefined;
  return Buffer.concat([FRAME_HEAD, Buffer.from(`"pos":"${pos}",`), frame.subarray(FRAME_HEAD.length)]);
}

/** The frame of a stored message, with its position; undefined when the message is malformed. */
export function storedFrame(store: DurableStore, kind: StreamKind, m: StoredMsg): Buffer | undefined {
  const decoded = decodeChatMessage(m.data);
  return decoded && withPosition(decoded.frame, store.position(kind, m.seq));
}

export async function resumeFrom(store: DurableStore, kind: StreamKind, stored: string, since: unknown): Promise<Resumed> {
  const top = await store.lastSeq(kind, stored);
  const from = store.sequenceOf(kind, since);
  if (from === undefined || from > top) return { recovered: false, top, frames: [] };
  const messages = await store.range(kind, stored, from, top);
  if (messages[0]?.seq !== from) return { recovered: false, top, frames: [] };
  const frames: Resumed['frames'] = [];
  for (const m of messages.slice(1)) {
    const frame = storedFrame(store, kind, m);
    if (frame) frames.push({ seq: m.seq, frame });
  }
  return { recovered: true, top, frames };
}

/**
 * A session's live messages of one destination held while it resumes: at most `max`, then it
 * overflows (the session is closed with 4009 by the caller).
 */
export class Hold {
  readonly frames: Array<{ seq: number; frame: Buffer }> = [];
  overflowed = false;
  constructor(readonly max: number) {}

  push(seq: number, frame: Buffer): void {
    if (this.frames.length >= this.max) this.overflowed = true;
    else this.frames.push({ seq, frame });
  }

  /** The replay, then the held frames after it: no gap, no repeat. */
  release(resumed: Resumed): Buffer[] {
    const { replay, live } = this.split(resumed);
    return [...replay, ...live];
  }

  /** The replay, and apart from it the held live frames that follow it. */
  split(resumed: Resumed): { replay: Buffer[]; live: Buffer[] } {
    const replay = resumed.frames.map((f) => f.frame);
    const live: Buffer[] = [];
    let last = Math.max(resumed.top, resumed.frames.at(-1)?.seq ?? 0);
    for (const held of this.frames) {
      if (held.seq !== 0 && held.seq <= last) continue;
      if (held.seq !== 0) last = held.seq;
      live.push(held.frame);
    }
    return { replay, live };
  }
}
