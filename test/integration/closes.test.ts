import { afterEach, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../harness/stack.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

describe('closes - node-wide conditions', () => {
  it('closes - a node going away closes its sessions with 1001', async () => {
    stack = await startStack();
    const { client } = await stack.session(0, 'c-leaving');
    const closing = stack.gateways[0]!.close();
    expect(await client.closedWith()).toBe(1001);
    await closing;
    expect(stack.gateways[0]!.sessions.size).toBe(0);
  });

  it('closes - with no auth service to ask, a new session closes with 1013', async () => {
    stack = await startStack({ auth: false });
    const client = stack.client(0, { token: await stack.token('c-early') });
    expect(await client.closedWith()).toBe(1013);
  });

  it('closes - a failure inside the token check closes only that session with 1011', async () => {
    let calls = 0;
    stack = await startStack({
      gateway: {
        verify: async () => {
          calls += 1;
          throw new Error('boom');
        },
      },
    });
    const client = stack.client(0, { token: await stack.token('c-bug') });
    expect(await client.closedWith()).toBe(1011);
    expect(calls).toBe(1);
  });

  it('closes - a reader that cannot keep up is closed with 4009 and the sender is not disturbed', async () => {
    stack = await startStack({ gateway: { maxBufferedBytes: 64 * 1024, limits: { sendsPerSecond: 1e6, sendBurst: 1e6, sendBytesPerSecond: 1e9, sendBytesBurst: 1e9 }, userSendBytesPerSecond: 1e9, userSendBytesBurst: 1e9 } });
    const { client: sender } = await stack.session(0, 'c-flooder');
    const { client: slow } = await stack.session(0, 'c-slow');
    const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const body = 'x'.repeat(32 * 1024);
    // Enough to fill the kernel's socket buffers and then the 64 KiB allowance.
    for (let batch = 0; batch < 40; batch++) {
      const acks = [];
      for (let i = 0; i < 25; i++) acks.push(sender.request({ type: 'send', id: `${batch}-${i}`, to: { user: 'c-slow' }, body }));
      await Promise.all(acks);
    }
    socket.resume();
    expect(await slow.closedWith(10_000)).toBe(4009);
    sender.send({ type: 'ping', id: 'p' });
    expect(await sender.next((f) => f.type === 'pong' && f.id === 'p')).toBeDefined();
  });
});
