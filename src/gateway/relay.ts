/**
 * Delivery, the last leg of a chat message (or signal): a message heard on a subject this node is
 * interested in is decoded once and written to every local member session but the one that sent it. The
 * first write counts the message's delivery latency (`chatgate_delivery_seconds`).
 */
import { decodeChatMessage } from './codec.ts';
import { CONTROL_MARK } from './presence.ts';
import type { Deliver } from './interest.ts';
import type { Metrics } from './metrics.ts';
import type { Session } from './session.ts';
import { limitedLog } from '../bounded-log.ts';
import type { Logger } from '../log.ts';

/**
 * `control`: a presence control line of another node (first byte `!`, presence.ts), handed over
 * before the chat decoder runs and never written to a socket.
 */
export function createRelay(
  metrics: Pick<Metrics, 'delivered'>,
  log: Logger,
  control: (subject: string, data: Uint8Array) => void = () => {},
): Deliver<Session> {
  const malformed = limitedLog(log);
  return (members, data, subject) => {
    if (data[0] === CONTROL_MARK) {
      control(subject, data);
      return;
    }
    const message = decodeChatMessage(data);
    if (!message) {
      malformed('warn', { bytes: data.length }, 'malformed chat message dropped');
      return;
    }
    let first = true;
    for (const session of members) {
      if (session.id === message.origin) continue;
      if (session.write(message.frame, message.type) && first) {
        metrics.delivered(message.ts);
        first = false;
      }
    }
  };
}
