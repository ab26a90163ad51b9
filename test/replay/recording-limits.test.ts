/**
 * The user filter's hold-back (docs/replay.md): a session's lines wait until its token check
 * names the user, then are written, or dropped for another user; a session that holds more than
 * 1000 lines by then is not recorded. One in-process gateway recording to a file.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseRecordings } from '../../src/observe/recording.ts';
import { startStack, type Stack } from '../harness/stack.ts';
import type { TestClient } from '../harness/client.ts';

let stack: Stack;
let dir: string;
let path: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chatgate-recording-limits-'));
  path = join(dir, 'node.jsonl');
  // Pings take from the send bucket (attack review, finding 8): this test sends over 1000 before auth.
  stack = await startStack({
    gateway: { recording: { to: 'file', path, user: 'rec-alice' }, limits: { sendsPerSecond: 1e6, sendBurst: 1e6 } },
  });
});
afterAll(async () => {
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A session that sends `pings` pings before its `auth` frame, then is welcomed and leaves. */
async function session(user: string, pings: number): Promise<{ session: string; client: TestClient }> {
  const client = stack.client(0, { via: 'none' });
  await client.opened;
  for (let i = 0; i < pings; i++) client.send({ type: 'ping', id: i });
  await client.next((f) => f.type === 'pong' && f.id === pings - 1);
  client.send({ type: 'auth', token: await stack.token(user) });
  const welcome = await client.type('welcome');
  client.ws.close(1000);
  await client.closed;
  return { session: welcome.session as string, client };
}

it('recording - with a user filter, lines before auth are held and written for that user only; over 1000 held, the session is not recorded', async () => {
  // Each ping before auth is three lines (the event, the pong, the state).
  const kept = await session('rec-alice', 5);
  const tooMany = await session('rec-alice', 400);
  const other = await session('rec-bob', 5);
  await stack.gateways[0]!.close();

  const text = await readFile(path, 'utf8');
  const { recordings } = parseRecordings(text);
  const sessions = recordings.filter((r) => r.header.machine === 'connection').map((r) => r.header.session);
  expect(sessions).toEqual([kept.session]);
  expect(text).not.toContain(tooMany.session);
  expect(text).not.toContain(other.session);
  const recording = recordings.find((r) => r.header.session === kept.session)!;
  const pingsBeforeAuth = recording.observations.filter((o) => o.kind === 'event' && o.event?.type === 'frame.ping');
  expect(pingsBeforeAuth).toHaveLength(5);
});
