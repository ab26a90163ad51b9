/**
 * The session that the replay tests record and that bench/capture-recording.ts captured as the
 * fixture: a real client on a real gateway authenticates with an `auth` frame, joins a room,
 * sends to it, gets `expiring` (a timer of the machine), refreshes its token, pings, sends a
 * malformed frame and closes.
 */
import { randomUUID } from 'node:crypto';
import type { GatewayOptions } from '../../src/gateway/gateway.ts';
import type { Stack } from '../harness/stack.ts';

/**
 * With a 60 s token, `expiring` comes 0.2–1.2 s after the welcome. A token's `exp` is in whole
 * seconds, so the expiring delay is 1200 − (welcome time mod 1000) ms: never near 0, where a
 * recorded delay of 1 ms and a replayed "already expiring" could fall on either side of the clamp
 * (a warning of 59.5 s put it there about once in ten runs).
 */
export const scenarioGateway: Partial<GatewayOptions> = { limits: { expiryWarningMs: 58_800 } };

export interface PlayedSession {
  session: string;
  /** The tokens and the message text the session sent: none may be in a redacted recording. */
  secrets: string[];
}

export async function playSession(stack: Stack, node: number, user: string): Promise<PlayedSession> {
  const token = await stack.token(user, { rooms: ['lobby'], ttl: 60 });
  const client = stack.client(node, { via: 'frame', token });
  const welcome = await client.type('welcome');
  await client.request({ type: 'join', id: 'j1', room: 'lobby' });
  const text = `hello ${randomUUID()}`;
  await client.request({ type: 'send', id: 's1', to: { room: 'lobby' }, body: { text } });
  await client.type('expiring');
  const fresh = await stack.token(user, { rooms: ['lobby'], ttl: 3600 });
  await client.request({ type: 'refresh', id: 'r1', token: fresh });
  client.send({ type: 'ping', id: 'p1' });
  await client.next((f) => f.type === 'pong' && f.id === 'p1');
  client.send('{not json');
  await client.next((f) => f.type === 'error' && f.code === 'bad_request');
  client.ws.close(1000, 'bye');
  await client.closedWith();
  return { session: welcome.session as string, secrets: [token, fresh, text] };
}
