/**
 * Isolation, as a property: random users and rooms (ids with `.`, `*`, `>`, spaces, Unicode),
 * sessions spread over two gateway nodes on two servers of a NATS cluster, random joins, sends
 * and signals. Every session must receive exactly the messages and signals the delivery rules
 * name, no more, no fewer; every `joined`/`left` it gets is about a room it joined and a user
 * joined there; `presence` of each room it joined names exactly the users joined there; and no
 * signal is ever stored (history holds only messages).
 *
 * With durable delivery (R3 streams) the same holds for what is stored: some sends carry keys
 * shared between users (a key dedupes only its own user's sends), each session's `history` of
 * its inbox and of every granted room holds exactly that destination's messages, an ungranted
 * room's history is refused, and a session that resumes with another user's position (or a
 * room's) gets nothing of anyone else's.
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
    gateway: {
      delivery: 'durable',
      history: { replicas: 3 },
      limits: { sendsPerSecond: 1e6, sendBurst: 1e6, signalsPerSecond: 1e6, signalBurst: 1e6 },
    },
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
        fc.record({
          from: fc.nat(5),
          toUser: fc.boolean(),
          target: fc.nat(10),
          key: fc.option(fc.constantFrom('k1', 'k2', '*', '.>')),
          signal: fc.boolean(),
        }),
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
      /** Positions handed out by welcomes and join acks (of empty destinations: the stream's last one). */
      const given: string[] = [];
      const open = await Promise.all(
        sessions.map(async (s) => {
          const grant = s.grant.map(roomId);
          const { client, welcome } = await stack.session(s.node, userId(s.user), { rooms: grant });
          given.push(welcome.pos as string);
          const joined: number[] = [];
          for (const r of s.grant) {
            if (!s.joinMask[r]) continue;
            const ack = await client.request({ type: 'join', id: `j${r}`, room: roomId(r) });
            expect(ack).toMatchObject({ type: 'ack', pos: expect.any(String) });
            given.push(ack.pos as string);
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
        /** The first ack of each (user, kind, key): a repeat gets it again and is delivered nowhere. */
        const firstAck = new Map<string, { msgId: unknown; pos: unknown }>();
        const stored = new Map<string, string[]>();
        const positions: string[] = [];
        const signals = new Set<string>();
        for (const [n, send] of sends.entries()) {
          const from = open[send.from % open.length]!;
          const body = `m${run}-${n}`;
          let to: { user: string } | { room: string };
          const toUser = send.toUser || from.joined.length === 0;
          // A signal has no key: never stored, never deduplicated.
          const dedupe = send.key === null || (send.signal && n > 0) ? undefined : `${from.user}|${toUser}|${send.key}`;
          const repeat = dedupe === undefined ? undefined : firstAck.get(dedupe);
          if (toUser) {
            const u = send.target % users.length;
            to = { user: userId(u) };
            if (!repeat) open.forEach((s, i) => s.user === u && expected[i]!.push(body));
          } else {
            const r = from.joined[send.target % from.joined.length]!;
            to = { room: roomId(r) };
            if (!repeat) open.forEach((s, i) => s !== from && s.joined.includes(r) && expected[i]!.push(body));
          }
          sentBy.set(body, { from: userId(from.user), to });
          // The first send is a message, so that the run has a position to resume from below.
          if (send.signal && n > 0) {
            signals.add(body);
            expect(await from.client.request({ type: 'signal', id: n, to, body })).toEqual({ type: 'ack', id: n });
            continue;
          }
          const frame: Record<string, unknown> & { id: number } = { type: 'send', id: n, to, body };
          if (send.key !== null) frame.key = send.key;
          const ack = await from.client.request(frame);
          expect(ack).toMatchObject({ type: 'ack', id: n });
          positions.push(ack.pos as string);
          if (repeat) {
            expect({ msgId: ack.msgId, pos: ack.pos }).toEqual(repeat);
          } else {
            if (dedupe !== undefined) firstAck.set(dedupe, { msgId: ack.msgId, pos: ack.pos });
            const dest = JSON.stringify(to);
            stored.set(dest, [...(stored.get(dest) ?? []), body]);
          }
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
        // What is stored is reachable only through the own inbox and granted rooms.
        const page = async (c: TestClient, id: string, target: Record<string, unknown>) => {
          c.send({ type: 'history', id, limit: 100, ...target });
          return c.next((f) => (f.type === 'history' || f.type === 'error') && f.id === id);
        };
        const chatOnly = (frames: unknown) => (frames as Array<{ body: unknown }>).filter((m) => !isSentinel(m as never)).map((m) => m.body);
        for (const [i, s] of open.entries()) {
          const inbox = await page(s.client, `hu${i}`, { user: true });
          expect(chatOnly(inbox.messages)).toEqual(stored.get(JSON.stringify({ user: userId(s.user) })) ?? []);
          for (const r of rooms.keys()) {
            const h = await page(s.client, `hr${i}-${r}`, { room: roomId(r) });
            if (s.grant.includes(r)) expect(chatOnly(h.messages)).toEqual(stored.get(JSON.stringify({ room: roomId(r) })) ?? []);
            else expect(h).toMatchObject({ type: 'error', code: 'forbidden' });
          }
          // Resuming with any position seen in this run (another user's, a room's, one a welcome or a
          // join gave) replays only the own inbox.
          const since = [...positions, ...given][(i * 7 + run) % (positions.length + given.length)]!;
          const back = stack.client(s.node, { token: await stack.token(userId(s.user), { rooms: s.grant.map(roomId) }), query: { since } });
          await back.type('welcome');
          for (const b of barrier) await sentinel(b, back, userId(s.user));
          const own = new Set(stored.get(JSON.stringify({ user: userId(s.user) })) ?? []);
          for (const m of back.messages().filter((f) => !isSentinel(f))) expect(own.has(m.body as string)).toBe(true);
          back.close();
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
