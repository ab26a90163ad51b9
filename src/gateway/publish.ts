/**
 * The one path by which a chat message leaves a node: a session's `send` and the server-side
 * publish API (publish-api.ts) both call `publishChat`, so that whatever delivery gains (durable
 * storage, `pos`, dedupe by `key`) every message gains with it.
 *
 * Signals take `publishSignal`: the same subjects, never stored, no `msgId`, no `pos`.
 */
import { nuid, type NatsConnection } from '@nats-io/nats-core';
import type { Destination } from '../../machines/connection.machine.ts';
import { subjects } from '../subjects.ts';
import { encodeChatMessage, encodeSignal } from './codec.ts';

export interface ChatPublish {
  /** The sending session's id (a room message skips it), or '' for none. */
  origin: string;
  /** The verified sender: a session's `sub`, or the publish API's `from`. */
  from: string;
  to: Destination;
  body: unknown;
  /** Set by the publish API: recipients see `"system": true`. */
  system?: boolean;
  /** The publisher's dedupe key (publish API); used once durable delivery stores messages. */
  key?: string;
}

export interface Published {
  msgId: string;
  /** The message's position in its destination's log, once durable delivery stores messages. */
  pos?: number;
}

/** Why a publish did not happen; callers map it to `unavailable` or HTTP 503. */
export class PublishUnavailable extends Error {
  constructor(message = 'NATS is not reachable') {
    super(message);
    this.name = 'PublishUnavailable';
  }
}

export interface Publisher {
  /** Resolves once the NATS server has the message. */
  publishChat(message: ChatPublish): Promise<Published>;
  /** Resolves once the NATS server has the signal. */
  publishSignal(signal: { origin: string; from: string; to: Destination; body: unknown }): Promise<void>;
}

const subjectOf = (to: Destination) => ('user' in to ? subjects.user(to.user) : subjects.room(to.room));

/** `flush`: one shared round trip per tick (Interest.flush). */
export function createPublisher(nc: NatsConnection, flush: () => Promise<void>): Publisher {
  // Not async: a send is on the hot path, and each async layer costs a promise per message.
  const unavailable = () => Promise.reject(new PublishUnavailable());
  const down = () => nc.isClosed() || nc.isDraining();
  return {
    publishChat({ origin, from, to, body, system }) {
      if (down()) return unavailable();
      const msgId = nuid.next();
      const ts = Date.now();
      const message = system ? { msgId, from, to, body, ts, system: true as const } : { msgId, from, to, body, ts };
      nc.publish(subjectOf(to), encodeChatMessage(origin, message));
      return flush().then(() => ({ msgId }), unavailable);
    },
    publishSignal({ origin, from, to, body }) {
      if (down()) return unavailable();
      nc.publish(subjectOf(to), encodeSignal(origin, { from, to, body }, Date.now()));
      return flush().then(undefined, unavailable);
    },
  };
}
