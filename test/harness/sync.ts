/**
 * Barriers for cross-node tests, built from the system's own ordering guarantees instead of
 * sleeps. A gateway uses one NATS connection for its subscriptions and its publishes, and NATS
 * keeps one connection's order across routes; so once a message that node A published after
 * something reaches node B's socket, everything A did before it has reached B too.
 */
import { randomUUID } from 'node:crypto';
import type { TestClient } from './client.ts';

/**
 * Sends a sentinel from `from` to the user behind `to` and waits until `to` has it: every message
 * `from`'s node published earlier to `to`'s node has then reached `to`'s socket already.
 */
export async function sentinel(from: TestClient, to: TestClient, toUser: string, timeoutMs = 5000): Promise<void> {
  const nonce = randomUUID();
  const id = `sentinel-${nonce}`;
  const reply = await from.request({ type: 'send', id, to: { user: toUser }, body: { sentinel: nonce } }, timeoutMs);
  if (reply.type !== 'ack') throw new Error(`sentinel refused: ${JSON.stringify(reply)}`);
  await to.next((f) => f.type === 'message' && (f.body as { sentinel?: string })?.sentinel === nonce, timeoutMs);
}

export const isSentinel = (f: { type: string; body?: unknown }) =>
  f.type === 'message' && typeof (f.body as { sentinel?: unknown })?.sentinel === 'string';

/** Polls `check` until it holds, for at most `timeoutMs`: a bounded wait for an event, never a sleep. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
