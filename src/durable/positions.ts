/**
 * Positions (`pos`): an opaque string a client keeps per destination and gives back as `since`
 * or `before`. It is `<epoch>-<seq>`: the stream's epoch (8 base64url characters derived from the
 * stream's creation time, so a recreated stream, which restarts its sequence at 1, never matches
 * an old position) and the JetStream stream sequence of the message in decimal. Sequences are
 * sparse per destination (one stream holds every user, or every room) but ordered.
 *
 * A destination with no message yet is given the stream's last sequence (the sequence of some
 * other destination's message, or 0 while the stream has taken none): every message it gets
 * later is after that (resume.ts, docs/durability.md).
 */
import { createHash } from 'node:crypto';

/** A decoded position: the stream epoch and sequence. */
export interface Position {
  epoch: string;
  seq: number;
}

/** The longest `pos` a client may send; anything longer is malformed. */
export const MAX_POSITION_LENGTH = 64;

const POSITION = /^([A-Za-z0-9_-]{8})-(0|[1-9][0-9]{0,15})$/;

/** The epoch of a stream: a short digest of its name and creation time. */
export function streamEpoch(stream: string, created: string): string {
  return createHash('sha256').update(`${stream}\n${created}`).digest('base64url').slice(0, 8);
}

export function encodePosition(epoch: string, seq: number): string {
  return `${epoch}-${seq}`;
}

/** The position in `value`, or undefined when it is not one (any type, any length). */
export function decodePosition(value: unknown): Position | undefined {
  if (typeof value !== 'string' || value.length > MAX_POSITION_LENGTH) return undefined;
  const match = POSITION.exec(value);
  if (!match) return undefined;
  const seq = Number(match[2]);
  if (!Number.isSafeInteger(seq)) return undefined;
  return { epoch: match[1]!, seq };
}
