/**
 * Durable delivery as a property: random interleavings of sends (to a user and to a room, from
 * senders on either node), disconnects of the recipient, and reconnects to either node with the
 * last position it saw (`?since=` for the inbox, `join` with `since` for the room). Over all of a
 * recipient's sessions, every acknowledged message addressed to it arrives exactly once and in
 * order per destination; `recovered` is false exactly when the position is beyond retention
 * (HISTORY_MAX_PER_TARGET = 5 here), and then nothing is replayed.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import fc from 'fast-check';
import { startStack, type Stack } from '../harness/stack.ts';
import type { Frame, TestClient } from '../harness/client.ts';

const RETAINED = 5;
let stack: Stack;
let run = 0;
let checked = 0;
beforeAll(async () => {
  stack = await startStack({
    nodes: 2,
    gateway: { delivery: 'durable', history: { maxPerTarget: RETAINED }, limits: { sendsPerSecond: 1e6, sendBurst: 1e6 } },
  });
});
afterAll(async () => {
  await stack?.stop();
});

/**
 * `reconnect` (also when away) may send one message while the recipient resumes (`during`):
 * it is stored before or after the resume's barrier, and must arrive once either way.
 */
type Op =
  | { kind: 'send'; room: boolean; from: number }
  | { kind: 'disconnect' }
  | { kind: 'reconnect'; node: number; during: boolean | null };
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('send' as const), room: fc.boolean(), from: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('disconnect' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reconnect' as const), node: fc.nat(1), during: fc.option(fc.boolean()) }) },
);

it('durable property - across disconnects and reconnects to either node, every acked message arrives once, in order, or recovered says it cannot', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 3, maxLength: 14 }), fc.nat(1), async (ops, firstNode) => {
      run += 1;
      const user = `pr-u-${run}`;
      const room = `pr-r-${run}`;
      const rooms = [room];
      const senders = await Promise.all([0, 1].map(async (n) => (await stack.session(n, `pr-s${n}-${run}`, { rooms })).client));
      for (const s of senders) expect(await s.request({ type: 'join', id: 'j', room })).toMatchObject({ type: 'ack' });
      /** Every acknowledged message per destination, in order: body and pos. */
      const acked = { user: [] as Array<{ body: string; pos: string }>, room: [] as Array<{ body: string; pos: string }> };
      /** What the recipient has seen, over all its sessions. */
      const seen = { user: [] as string[], room: [] as string[] };
      const expected = { user: [] as string[], room: [] as string[] };
      const cursor: { user?: string; room?: string } = {};
      let recipient: TestClient | undefined;
      let from = 0;

      const isRetained = (dest: 'user' | 'room') => {
        const i = acked[dest].findIndex((m) => m.pos === cursor[dest]);
        return i >= 0 && acked[dest].length - i <= RETAINED;
      };
      const send = async (dest: 'user' | 'room', sender: number, body: string) => {
        const ack = await senders[sender]!.request({ type: 'send', id: body, to: dest === 'room' ? { room } : { user }, body });
        expect(ack).toMatchObject({ type: 'ack' });
        acked[dest].push({ body, pos: ack.pos as string });
      };
      const connect = async (node: number, during?: { dest: 'user' | 'room'; body: string }) => {
        const query: Record<string, string> = cursor.user === undefined ? {} : { since: cursor.user };
        // Sent while resuming: only where the resume is sure to recover, so that it must arrive once.
        const concurrent = during && isRetained(during.dest) ? send(during.dest, 0, during.body) : undefined;
        const c = stack.client(node, { token: await stack.token(user, { rooms }), query });
        const welcome = await c.type('welcome');
        from = 0;
        const pending: Array<'user' | 'room'> = [];
        for (const dest of ['user', 'room'] as const) {
          const since = cursor[dest];
          let recovered: unknown;
          if (dest === 'user') recovered = welcome.recovered;
          else {
            const frame: Record<string, unknown> & { id: string } = { type: 'join', id: 'jr', room };
            if (since !== undefined) frame.since = since;
            recovered = (await c.request(frame)).recovered;
          }
          if (since === undefined) {
            expect(recovered).toBeUndefined();
            continue;
          }
          const retained = isRetained(dest);
          expect(recovered, `${dest} since beyond retention: ${!retained}`).toBe(retained);
          if (retained) pending.push(dest);
        }
        await concurrent;
        // Now the whole stored suffix after each recovered position is known.
        for (const dest of pending) {
          const i = acked[dest].findIndex((m) => m.pos === cursor[dest]);
          expected[dest].push(...acked[dest].slice(i + 1).map((m) => m.body));
        }
        return c;
      };
      /** Waits until the recipient has everything expected so far, and records it. */
      const settle = async () => {
        if (!recipient) return;
        const want = expected.user.length + expected.room.length - seen.user.length - seen.room.length;
        const isChat = (f: Frame) => f.type === 'message';
        if (want > 0) {
          await recipient.next(() => recipient!.frames.slice(from).filter(isChat).length >= want, 10_000);
        }
        for (const m of recipient.frames.slice(from).filter(isChat)) {
          const dest = 'room' in (m.to as object) ? 'room' : 'user';
          seen[dest].push(m.body as string);
          cursor[dest] = m.pos as string;
        }
        from = recipient.frames.length;
      };
      const disconnect = async () => {
        await settle();
        recipient?.close();
        await recipient?.closed;
        recipient = undefined;
      };

      try {
        recipient = await connect(firstNode);
        for (const [n, o] of [...ops, { kind: 'send', room: false, from: 0 } as Op, { kind: 'send', room: true, from: 1 } as Op].entries()) {
          const body = `b${run}-${n}`;
          if (o.kind === 'disconnect') await disconnect();
          else if (o.kind === 'reconnect') {
            await disconnect();
            recipient = await connect(o.node, o.during === null ? undefined : { dest: o.during ? 'room' : 'user', body });
          } else {
            const dest = o.room ? 'room' : 'user';
            await send(dest, o.from, body);
            if (recipient) expected[dest].push(body);
          }
        }
        if (!recipient) recipient = await connect(run % 2);
        // The last two sends came after everything else on each destination: once they are in,
        // anything extra (a repeat) would be in too.
        await settle();
        expect(seen.user).toEqual(expected.user);
        expect(seen.room).toEqual(expected.room);
        checked += seen.user.length + seen.room.length;
      } finally {
        recipient?.close();
        for (const s of senders) s.close();
      }
    }),
    { numRuns: 25, seed: Number(process.env.DURABLE_SEED ?? Date.now() % 2 ** 31) },
  );
  console.info(`durable property: ${checked} deliveries checked over ${run} runs`);
  expect(checked).toBeGreaterThan(50);
}, 180_000);
