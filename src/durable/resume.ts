/**
 * Resume one destination for one session from a client's position (`since`), and the frames of
 * stored messages.
 *
 * The caller first subscribes the session to the live subject and holds its live messages
 * (`Hold`). Then the barrier (store.ts `barrier`): the destination's newest sequence, read from
 * the stream leader (`top`; for an empty destination the stream's last sequence is its `pos`).
 * Every message after `top` was stored after the subscription was in place, so it comes live;
 * every message up to `top` is read from the stream.
 *
 * `recovered` is true only when no message of the destination after `since` can have been
 * removed; then the replay is every message of it after `since` up to `top`, and the held live
 * messages after `top` follow it. Messages leave a stream only by its limits (the streams deny
 * deletes and purges): by age, oldest of the stream first, and by `max_msgs_per_subject`, oldest
 * of that destination first. So it is recovered when the message at `since` is still stored in
 * this destination (nothing of it after that can be gone), or, for a `since` whose message is
 * elsewhere or gone (the position of a destination that was empty, which is another
 * destination's sequence), when after the replay was read the stream's oldest message is at or
 * before `since + 1` (age took nothing after `since`) and the destination holds fewer messages
 * than its limit (the limit took none: had it taken one after `since`, the destination would
 * hold a full limit of newer ones), and the stream is still the one whose epoch the node knows.
 * Otherwise (too old, another epoch, malformed, ahead of the stream, or a destination at its
 * limit) nothing is replayed. See docs/durability.md.
 */
import type { StoredMsg } from '@nats-io/jetstream';
import { decodeChatMessage } from '../gateway/codec.ts';
import type { DurableStore } from './store.ts';
import type { StreamKind } from './streams.ts';

export interface Resumed {
  recovered: boolean;
  /** The barrier: messages after it come live. */
  top: number;
  /** The sequence of the position the session starts at (store.ts `Barrier`). */
  pos: number;
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
  const { top, pos } = await store.barrier(kind, stored);
  const lost: Resumed = { recovered: false, top, pos, frames: [] };
  const from = store.sequenceOf(kind, since);
  // A position this destination was given is never past its barrier position.
  if (from === undefined || from > pos) return lost;
  const messages = top > 0 && from <= top ? await store.range(kind, stored, from, top) : [];
  const atSince = messages[0]?.seq === from;
  if (!atSince && !(await nothingRemovedAfter(store, kind, stored, from))) return lost;
  const frames: Resumed['frames'] = [];
  for (const m of atSince ? messages.slice(1) : messages) {
    const frame = storedFrame(store, kind, m);
    if (frame) frames.push({ seq: m.seq, frame });
  }
  return { recovered: true, top, pos, frames };
}

/**
 * Whether no message of `subject` after sequence `since` has been removed by the stream's limits
 * (read after the replay, so that what the replay read was all there; see the top of this file).
 */
async function nothingRemovedAfter(store: DurableStore, kind: StreamKind, subject: string, since: number): Promise<boolean> {
  const state = await store.state(kind, subject);
  // Made anew since this node read its epoch: what it held is gone.
  if (state.epoch !== store.epochs[kind] || since > state.last) return false;
  // Age removes a stream's oldest messages first, so nothing after `since` aged out when the
  // stream still holds `since + 1` or older; or when it is younger than its max age (then only
  // other destinations' per-subject limits can have moved its first sequence past `since`).
  const agedOut = state.mayHaveAgedOut && state.first > since + 1;
  const limited = state.maxPerSubject > 0 && state.count >= state.maxPerSubject;
  return !agedOut && !limited;
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
