/**
 * Delivery, the last leg of a chat message: a message heard on a subject this node is interested
 * in is decoded once and written to every local member session but the one that sent it. The
 * first write counts the message's delivery latency (`chatgate_delivery_seconds`).
 */
import { decodeChatMessage } from './codec.ts';
import type { Deliver } from './interest.ts';
import type { Metrics } from './metrics.ts';
import type { Session } from './session.ts';
import { limitedLog } from '../bounded-log.ts';
import type { Logger } from '../log.ts';

export function createRelay(metrics: Pick<Metrics, 'delivered'>, log: Logger): Deliver<Session> {
  const malformed = limitedLog(log);
  return (members, data) => {
    const message = decodeChatMessage(data);
    if (!message) {
      malformed('warn', { bytes: data.length }, 'malformed chat message dropped');
      return;
    }
    let first = true;
    for (const session of members) {
      if (session.id === message.origin) continue;
      if (session.write(message.frame, 'message') && first) {
        metrics.delivered(message.ts);
        first = false;
      }
    }
  };
}
