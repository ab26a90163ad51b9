/**
 * Where the client is in each destination it reads: its inbox and each room. Positions are
 * opaque (docs/protocol.md), so the client never compares them: it keeps the last one of each
 * destination, to resume from, and a bounded window of the ones it has seen, to drop a message
 * that comes twice (a resume replays from the last position it knows; a live copy may race it).
 * Without durable delivery messages have no position, and the `msgId` stands in for it.
 */
import type { Destination, MessageFrame, Position } from '../protocol.ts';

/** The positions of one destination the client remembers as seen. */
export const SEEN_WINDOW = 2048;

/** `inbox` for the user's own messages, `room:<id>` for a room. */
export type DestinationKey = string;

export const destinationKey = (to: Destination): DestinationKey => ('room' in to ? `room:${to.room}` : 'inbox');

interface Track {
  last: Position | undefined;
  seen: Set<string>;
}

export class Positions {
  readonly #tracks = new Map<DestinationKey, Track>();

  #track(key: DestinationKey): Track {
    let track = this.#tracks.get(key);
    if (!track) this.#tracks.set(key, (track = { last: undefined, seen: new Set() }));
    return track;
  }

  /** The position to resume `key` from, when one is known. */
  last(key: DestinationKey): Position | undefined {
    return this.#tracks.get(key)?.last;
  }

  /** Takes a message in: false when it was seen already (a duplicate, to drop). */
  accept(message: MessageFrame): boolean {
    const track = this.#track(destinationKey(message.to));
    const id = message.pos ?? `msg:${message.msgId}`;
    if (track.seen.has(id)) return false;
    track.seen.add(id);
    // Sets iterate in insertion order: the first entry is the oldest.
    if (track.seen.size > SEEN_WINDOW) track.seen.delete(track.seen.values().next().value!);
    if (message.pos !== undefined) track.last = message.pos;
    return true;
  }

  /**
   * Takes `pos` as where `key` stands when nothing is known of it yet (the ack of an own send, the
   * newest stored message): a later resume then starts there instead of from nothing. Never moves
   * a known position, which could skip a message still on its way.
   */
  seed(key: DestinationKey, pos: Position): void {
    const track = this.#track(key);
    track.last ??= pos;
  }

  /** Moves `key` to `pos` (a resume the node could not make: the old position is no use). */
  reset(key: DestinationKey, pos: Position): void {
    this.#track(key).last = pos;
  }

  /** Forgets a destination (a room left for good). */
  forget(key: DestinationKey): void {
    this.#tracks.delete(key);
  }
}
