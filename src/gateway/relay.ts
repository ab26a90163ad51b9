/**
 * Delivery, the last leg of a chat message: a message heard on a subject this node is interested
 * in has been decoded once (and, with durable delivery, given its `pos` and checked for gaps by
 * src/durable/delivery.ts); its frame bytes are written to every local member session but the
 * one that sent it. A member resuming that destination holds the frame instead (`divert`). The
 * first write counts the message's delivery latency (`chatgate_delivery_seconds`).
 */
import type { ServerFrame } from './codec.ts';

export interface RelayMember {
  readonly id: string;
  write(data: string | Buffer, type: ServerFrame['type'] | 'message' | 'history'): boolean;
}

export function relay<M extends RelayMember>(
  members: Iterable<M>,
  message: { origin: string; ts: number },
  frame: Buffer,
  divert: (member: M) => boolean,
  delivered: ((publishedAtMs: number) => void) | undefined,
): void {
  let first = true;
  for (const member of members) {
    if (member.id === message.origin || divert(member)) continue;
    if (member.write(frame, 'message') && first) {
      delivered?.(message.ts);
      first = false;
    }
  }
}
