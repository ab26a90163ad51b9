/**
 * Presence when a node dies: a gateway child process is killed with SIGKILL (no bye, no leave
 * deltas) and the sessions on the surviving node get `left` for its users within 15 s, the bound
 * the contract gives (PRESENCE_NODE_TIMEOUT_MS 10000 and PRESENCE_HEARTBEAT_MS 2000, the defaults).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';
import { ChatgateProcess, stopAll } from '../harness/process.ts';
import { TestClient, type Frame } from '../harness/client.ts';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ nodes: 1 });
});
afterAll(async () => {
  await stopAll();
  await stack?.stop();
});

const isEvent = (type: string, room: string, user: string) => (f: Frame) => f.type === type && f.room === room && f.user === user;

it('presence - the users of a SIGKILLed node are left within 15 s; those also on a live node stay', async () => {
  const room = 'crash.room';
  const child = new ChatgateProcess(['gateway'], {
    CHATGATE_HOME: stack.home,
    NATS_URL: stack.nats[0]!.url,
    PORT: '0',
    HOST: '127.0.0.1',
    NODE_ID: 'doomed',
  });
  const port = Number((await child.waitFor(/"port":(\d+)[^\n]*"msg":"gateway ready"/, 30_000))[1]);
  const onChild = async (sub: string) => {
    const c = new TestClient(`ws://127.0.0.1:${port}/ws`, { token: await stack.token(sub, { rooms: [room] }) });
    await c.type('welcome');
    expect(await c.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
    return c;
  };
  const { client: watcher } = await stack.session(0, 'survivor', { rooms: [room] });
  expect(await watcher.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
  const { client: both } = await stack.session(0, 'both', { rooms: [room] });
  expect(await both.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
  const victims = [await onChild('victim'), await onChild('both')];
  await watcher.next(isEvent('joined', room, 'victim'), 10_000);

  const killedAt = Date.now();
  child.child.kill('SIGKILL');
  await watcher.next(isEvent('left', room, 'victim'), 15_000);
  const elapsed = Date.now() - killedAt;
  console.info(`presence: left ${elapsed} ms after SIGKILL`);
  expect(elapsed).toBeLessThanOrEqual(15_000);
  for (const v of victims) v.close();

  watcher.send({ type: 'presence', id: 'p', room });
  expect(await watcher.next((f) => f.id === 'p')).toMatchObject({ count: 2, users: ['both', 'survivor'] });
  expect(watcher.frames.some(isEvent('left', room, 'both'))).toBe(false);
}, 60_000);
