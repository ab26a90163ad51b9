/**
 * Bad input never stops a node: one regression test per defect of issue 9 that once did, each
 * against real `chatgate` processes (a crash shows as an exit), each followed by the checks that
 * the node still serves. Each defect has a fleet of its own, so that one crash cannot make
 * another defect's test fail for the wrong reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { encodeChatMessage, MAX_BODY_DEPTH } from '../../src/gateway/codec.ts';
import { subjects } from '../../src/subjects.ts';
import { rawRequest, startFleet, type Fleet } from '../harness/fleet.ts';

const upgradeHeaders =
  'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

/** `depth` arrays, one inside the other, around `0`. */
const nested = (depth: number) => `${'['.repeat(depth)}0${']'.repeat(depth)}`;

describe('bad input - HTTP request targets', () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await startFleet();
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  // Origin-form targets are paths, even when they start with `//` (which `new URL(t, base)` took
  // for a host); anything that is neither a path nor an absolute http URL is a bad request.
  const cases: Array<[target: string, gateway: number, admin: number]> = [
    ['//', 404, 404],
    ['//:99999', 404, 404],
    ['//[', 404, 404],
    ['//ws', 404, 404],
    ['http://[', 400, 400],
    ['*', 400, 400],
    ['x', 400, 400],
    ['http://host/healthz', 200, 404],
  ];

  it('bad input - odd request targets get 400 or 404 on both ports, plain and upgrade, and the node serves on', async () => {
    for (const [target, gatewayStatus, adminStatus] of cases) {
      const plain = `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`;
      const upgrade = `GET ${target} HTTP/1.1\r\nHost: x\r\n${upgradeHeaders}\r\n`;
      expect((await rawRequest(fleet.port, plain)).status, `gateway GET ${target}`).toBe(gatewayStatus);
      expect((await rawRequest(fleet.port, upgrade)).status, `gateway upgrade ${target}`).toBe(gatewayStatus === 200 ? 404 : gatewayStatus);
      expect((await rawRequest(fleet.adminPort, plain)).status, `admin GET ${target}`).toBe(adminStatus);
      expect((await rawRequest(fleet.adminPort, upgrade)).status, `admin upgrade ${target}`).toBe(adminStatus);
    }
    await fleet.healthy();
    const a = await fleet.session('http-a');
    const b = await fleet.session('http-b');
    await fleet.chats(a.client, b.client, 'http-b');
    // At most one line per refused target (3 targets, plain and upgrade, on each port; Node's own
    // parser refuses some before any handler sees them), none with the target itself.
    const lines = fleet.gateway.stdout.split('\n').filter((l) => l.includes('"msg":"bad request target"'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(12);
    expect(fleet.gateway.stdout).not.toContain('http://[');
  });
});

describe('bad input - deeply nested bodies while observed', () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await startFleet({ gatewayEnv: (home) => ({ RECORD_TO: `file:${join(home, 'recording.jsonl')}` }) });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('bad input - a 10,000-deep body before authentication is bad_request while a recorder listens', async () => {
    const c = fleet.client({ via: 'none' });
    await c.opened;
    c.send(`{"type":"send","id":"deep","to":{"user":"x"},"body":${nested(10_000)}}`);
    expect(await c.next((f) => f.type === 'error' && f.id === 'deep')).toMatchObject({ code: 'bad_request' });
    await fleet.healthy();
  });

  it('bad input - a 10,000-deep body from a session the inspector follows is bad_request; depth 32 is delivered', async () => {
    const a = await fleet.session('deep-a');
    const b = await fleet.session('deep-b');
    // Follow a's session on the admin port: the inspector's listener observes every event.
    const unfollow = await fleet.follow(a.welcome.session as string);
    try {
      a.client.send(`{"type":"send","id":"deep","to":{"user":"deep-b"},"body":${nested(10_000)}}`);
      expect(await a.client.next((f) => f.id === 'deep')).toMatchObject({ type: 'error', code: 'bad_request' });
      const edge = await a.client.request({ type: 'send', id: 'edge', to: { user: 'deep-b' }, body: JSON.parse(nested(MAX_BODY_DEPTH)) });
      expect(edge.type).toBe('ack');
      await b.client.next((f) => f.type === 'message' && f.msgId === edge.msgId);
      const over = await a.client.request({ type: 'send', id: 'over', to: { user: 'deep-b' }, body: JSON.parse(nested(MAX_BODY_DEPTH + 1)) });
      expect(over).toMatchObject({ type: 'error', code: 'bad_request' });
    } finally {
      unfollow();
    }
    await fleet.healthy();
    await fleet.chats(b.client, a.client, 'deep-a');
    // The recorder wrote the session and the refusals, and is still writing.
    expect(await readFile(join(fleet.home, 'recording.jsonl'), 'utf8')).toContain(a.welcome.session as string);
  });
});

describe('bad input - malformed NATS messages', () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await startFleet();
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('bad input - a malformed message on a live user subject is dropped; the session still gets messages and auth still answers', async () => {
    const a = await fleet.session('nats-a');
    const b = await fleet.session('nats-b');
    for (const payload of ['a b\n{}', 'a 1e999\n{}', ' -1\n{"type":"message"}', '', '\n', 'x'.repeat(100)]) {
      fleet.nc.publish(subjects.user('nats-a'), payload);
    }
    // After the bad ones, from the same publisher on the same subject: arrives after them.
    fleet.nc.publish(
      subjects.user('nats-a'),
      encodeChatMessage('', { msgId: 'after', from: 'someone', to: { user: 'nats-a' }, body: 'after', ts: Date.now() }),
    );
    await fleet.nc.flush();
    expect(await a.client.next((f) => f.type === 'message' && f.msgId === 'after')).toMatchObject({ body: 'after' });
    // Nothing of the malformed ones reached the socket.
    expect(a.client.frames.filter((f) => f.type !== 'welcome' && f.type !== 'message')).toEqual([]);
    expect(a.client.messages()).toHaveLength(1);
    await fleet.chats(b.client, a.client, 'nats-a');
    await fleet.healthy();
  });
});
