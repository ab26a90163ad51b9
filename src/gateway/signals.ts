/**
 * Signals (typing, cursor, "seen"): published like a chat message, on the same live user or room
 * subject, so they reach exactly the sessions a message would, over the subscriptions the nodes
 * already hold. Never stored, whatever the delivery mode: a signal goes to the live subject with a
 * core NATS publish (no JetStream, no `Nats-Sequence`, so durable delivery's live path passes it
 * through untouched), has no `msgId` and no `pos`, and a session that is not there never sees it.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { Destination } from '../../machines/connection.machine.ts';
import { subjects } from '../subjects.ts';
import { encodeSignal } from './codec.ts';

export interface SignalPublisher {
  /** Resolves once the NATS server has the signal; rejects when NATS cannot be reached. */
  publishSignal(signal: { origin: string; from: string; to: Destination; body: unknown }): Promise<void>;
}

/** `flush`: one shared round trip per tick (Interest.flush). */
export function createSignalPublisher(nc: NatsConnection, flush: () => Promise<void>): SignalPublisher {
  return {
    publishSignal({ origin, from, to, body }) {
      if (nc.isClosed() || nc.isDraining()) return Promise.reject(new Error('NATS is not reachable'));
      const subject = 'user' in to ? subjects.user(to.user) : subjects.room(to.room);
      nc.publish(subject, encodeSignal(origin, { from, to, body }, Date.now()));
      return flush();
    },
  };
}
