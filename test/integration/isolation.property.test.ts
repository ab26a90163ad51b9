/**
 * Isolation, as a property: random users and rooms (ids with `.`, `*`, `>`, spaces, Unicode),
 * sessions spread over two gateway nodes on two servers of a NATS cluster, random joins, sends
 * and signals. Every session must receive exactly the messages and signals the delivery rules
 * name, no more, no fewer; every `joined`/`left` it gets is about a room it joined and a user
 * joined there; and `presence` of each room it joined names exactly the users joined there.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import fc from 'fast-check';
import { startStack, type Stack } from '../harness/stack.ts';
import { isSentinel, sentinel } from '../harness/sync.ts';
import type { TestClient } from '../harness/client.ts';

let stack: Stack;
let barrier: TestClient[];
let deliveries = 0;
let presenceEvents = 0;
let run = 0;

beforeAll(async () => {
  // The barrier sessions send a sentinel for every check: no send rate limit here.
  stack = await startStack({
    nodes: 2,
    cluster: true,
    gateway: { limits: { sendsPerSecond: 1e6, sendBurst: 1e6, signalsPerSecond: 1e6, signalBurst: 1e6 } },
  });
  barrier = [(await stack.session(0, 'iso-barrier-0')).client, (await stack.session(1, 'iso-barrier-1')).client];
});
afterAll(async () => {
  await stack?.stop();
});

const tricky = fc.constantFrom('.', '*', '>', ' ', '.*', '>.', 'a.b', '😀', 'é', '\u0000', '\t', '$', 'ü.>', '*.>');
const idArb = fc
  .array(fc.oneof(tricky, fc.string({ minLength: 1, maxLength: 3, unit: 'grapheme' })), { minLength: 1, maxLength: 4 })
  .map((parts) => parts.join(''))
  .filter((s) => s.length <= 256 && s.isWellFormed());

const scenario = fc
  .record({
    users: fc.uniqueArray(idArb, { minLength: 2, maxLength: 4 }),
    rooms: fc.uniqueArray(idArb, { minLength: 1, maxLength: 3 }),
  })
  .chain(({ users, rooms }) =>
    fc.record({
      users: fc.constant(users),
      rooms: fc.constant(rooms),
      sessions: fc.array(
        fc.record({
          user: fc.nat(users.length - 1),
          node: fc.nat(1),
          grant: fc.subarray(rooms.map((_, i) => i)),
          joinMask: fc.array(fc.boolean(), { minLength: rooms.length, maxLength: rooms.length }),
        }),
        { minLength: 2, maxLength: 6 },
      ),
      sends: fc.array(
        fc.record({ from: fc.nat(5), toUser: fc.boolean(), target: fc.nat(10), signal: fc.boolean() }),
        { minLength: 5, maxLength: 25 },
      ),
    }),
  );

it('isolation - every delivery across two nodes obeys the rules, with exact counts', async () => {
  await fc.assert(
    fc.asyncProperty(scenario, async ({ users, rooms, sessions, sends }) => {
      run += 1;
      // Ids are unique per run so runs cannot see each other.
      const userId = (i: number) => `${users[i]}#${run}`;
      const roomId = (i: number) => `${rooms[i]}#${run}`;
      const open = await Promise.all(
        sessions.map(async (s) => {
          const grant = s.grant.map(roomId);
          const { client } = await stack.session(s.node, userId(s.user), { rooms: grant });
          const joined: number[] = [];
          for (const r of s.grant) {
            if (!s.joinMask[r]) continue;
            expect(await client.request({ type: 'join', id: `j${r}`, room: roomId(r) })).toMatchObject({ type: 'ack' });
            joined.push(r);
          }
          return { ...s, client, joined };
        }),
      );
      try {
        // Make every join known to both nodes' servers before anyone sends.
        await sentinel(barrier[0]!, barrier[1]!, 'iso-barrier-1');
        await sentinel(barrier[1]!, barrier[0]!, 'iso-barrier-0');

        const expected = open.map(() => [] as string[]);
        const sentBy = new Map<string, { from: string; to: unknown }>();
        const signals = new Set<string>();
        for (const [n, send] of sends.entries()) {
          const from = open[send.from % open.length]!;
          const body = `m${run}-${n}`;
          let to: { user: string } | { room: string };
          if (send.toUser || from.joined.length === 0) {
            const u = send.target % users.length;
            to = { user: userId(u) };
            open.forEach((s, i) => s.user === u && expected[i]!.push(body));
          } else {
            const r = from.joined[send.target % from.joined.length]!;
            to = { room: roomId(r) };
            open.forEach((s, i) => s !== from && s.joined.includes(r) && expected[i]!.push(body));
          }
          sentBy.set(body, { from: userId(from.user), to });
          const ack = await from.client.request({ type: send.signal ? 'signal' : 'send', id: n, to, body });
          expect(ack).toMatchObject({ type: 'ack', id: n });
          if (send.signal) signals.add(body);
        }
        // Everything both nodes published has now reached every socket.
        for (const s of open) {
          for (const b of barrier) await sentinel(b, s.client, userId(s.user));
        }
        // Who is joined where, by this run's sessions: the only users presence may name.
        const joinedUsers = rooms.map((_, r) => [...new Set(open.filter((s) => s.joined.includes(r)).map((s) => userId(s.user)))].sort());
        for (const [i, s] of open.entries()) {
          const got = s.client.frames.filter((m) => (m.type === 'message' || m.type === 'signal') && !isSentinel(m));
          for (const m of got) {
            const origin = sentBy.get(m.body as string);
            expect(origin, 'a message or signal nobody sent').toBeDefined();
            expect({ from: m.from, to: m.to }).toEqual(origin);
            expect(m.type, 'a signal arrives as a signal, a message as a message').toBe(signals.has(m.body as string) ? 'signal' : 'message');
          }
          expect(got.map((m) => m.body).sort()).toEqual([...expected[i]!].sort());
          deliveries += got.length;
          for (const e of s.client.frames.filter((f) => f.type === 'joined' || f.type === 'left')) {
            const r = rooms.findIndex((_, k) => roomId(k) === e.room);
            expect(s.joined, `a presence event of a room this session did not join: ${JSON.stringify(e)}`).toContain(r);
            expect(joinedUsers[r], 'a presence event about a user not in the room').toContain(e.user);
            presenceEvents += 1;
          }
          for (const r of s.joined) {
            s.client.send({ type: 'presence', id: `p${r}`, room: roomId(r) });
            const answer = await s.client.next((f) => f.type === 'presence' && f.id === `p${r}`);
            expect(answer.users, `presence of ${roomId(r)}`).toEqual(joinedUsers[r]);
          }
        }
      } finally {
        for (const s of open) s.client.close();
      }
    }),
    { numRuns: 60, seed: Number(process.env.ISOLATION_SEED ?? Date.now() % 2 ** 31) },
  );
  console.info(`isolation: ${deliveries} deliveries and ${presenceEvents} presence events checked over ${run} runs`);
  expect(presenceEvents).toBeGreaterThan(0);
  expect(deliveries).toBeGreaterThanOrEqual(500);
}, 180_000);
