/**
 * Limits that count what costs (issue 9, defects 6–9), end to end: a real nats-server, the auth
 * service, a gateway and real WebSockets. Each test names the defect it pins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect as tcpConnect, type Socket } from 'node:net';
import { chmod, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet } from 'jose';
import type { NatsConnection } from '@nats-io/nats-core';
import { startStack, type Stack } from '../harness/stack.ts';
import { sentinel, until } from '../harness/sync.ts';
import { capturedLog } from '../harness/log-lines.ts';
import { loadSigningKeys } from '../../src/auth/keys.ts';
import { createTokenVerifier, MAX_TOKEN_LENGTH, mintToken } from '../../src/auth/tokens.ts';
import { connectNats, closeNats } from '../../src/bus/connection.ts';
import { subjects } from '../../src/subjects.ts';
import { createLogger } from '../../src/log.ts';
import { IpLimiter } from '../../src/gateway/ip-limiter.ts';
import { OptionError, parseConfig } from '../../src/config.ts';
import { gatewayOptions } from '../../src/cli/gateway-options.ts';
import { startAdminServer, type AdminServer } from '../../src/admin/server.ts';
import type { Gateway } from '../../src/gateway/gateway.ts';
import { clientAddress } from '../../src/gateway/upgrade.ts';
import type { IncomingMessage } from 'node:http';

let stack: Stack | undefined;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await stack?.stop();
  stack = undefined;
});

/** Sends a request head that never ends and waits (at most 5 s) for the server to close: what it answered. */
async function slowHeadersAnswer(port: number, head: string): Promise<string> {
  const socket: Socket = tcpConnect(port, '127.0.0.1');
  cleanups.push(async () => void socket.destroy());
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(head);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closed,
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('slow headers not cut within 5 s')), 5000))),
  ]).finally(() => clearTimeout(timer));
  return received;
}

/** How an upgrade ended: 'open', or the client's error (e.g. `HTTP 429`). */
const outcome = (opened: Promise<void>) =>
  opened.then(
    () => 'open',
    (err: Error) => err.message,
  );

describe('limits - tokens (defects 6 and 7)', () => {
  it('limits - a degraded session that refreshes with another user\u2019s token is still re-checked and closed with 4001', async () => {
    // A key the auth service does not know stands for keys a node cached before a rotation:
    // tokens signed with it pass the node's local check (degraded) and fail the re-check.
    const staleHome = await mkdtemp(join(tmpdir(), 'chatgate-stale-'));
    cleanups.push(() => rm(staleHome, { recursive: true, force: true }));
    const staleKeys = await loadSigningKeys(staleHome);
    const staleVerify = createTokenVerifier(createLocalJWKSet(staleKeys.jwks));
    let gateway: Gateway | undefined;
    stack = await startStack({
      gateway: {
        verify: async (token) => {
          const local = await staleVerify(token);
          return local.outcome === 'ok' ? { ...local, degraded: true } : gateway!.auth.verify(token);
        },
      },
    });
    gateway = stack.gateways[0]!;
    const alice = stack.client(0, { token: await mintToken(staleKeys, { sub: 'd6-alice' }) });
    expect(await alice.type('welcome')).toMatchObject({ user: 'd6-alice', degraded: true });
    // Bob's token is valid, and the auth service says so: the refresh is refused all the same.
    const refused = await alice.request({ type: 'refresh', id: 'r', token: await stack.token('d6-bob') });
    expect(refused).toMatchObject({ type: 'error', code: 'forbidden' });
    // The re-check (asked for a second after a degraded admission) still covers alice.
    expect(await alice.closedWith(10_000)).toBe(4001);
  });

  it('limits - a token over MAX_TOKEN_LENGTH is refused on every path before anything is forwarded', async () => {
    stack = await startStack();
    const spy: NatsConnection = await connectNats(stack.nats[0]!.url, 'auth-spy');
    cleanups.push(() => closeNats(spy));
    const forwarded: string[] = [];
    spy.subscribe(subjects.authVerify, {
      callback: (_err, msg) => {
        forwarded.push((JSON.parse(msg.string()) as { token: string }).token);
      },
    });
    await spy.flush();

    const long = `eyJ${'A'.repeat(MAX_TOKEN_LENGTH)}`;
    for (const via of ['header', 'protocol', 'frame'] as const) {
      const client = stack.client(0, { token: long, via });
      expect(await client.closedWith(), via).toBe(4001);
    }
    const { client } = await stack.session(0, 'd7-refresher');
    expect(await client.request({ type: 'refresh', id: 'r', token: long })).toMatchObject({
      type: 'error',
      code: 'unauthorized',
    });
    // Barrier: a short bad token is forwarded on the same connection, after all of the above.
    const barrier = stack.client(0, { token: 'd7-barrier-token' });
    expect(await barrier.closedWith()).toBe(4001);
    await until('the barrier token reached the auth subject', () => forwarded.includes('d7-barrier-token'));
    expect(forwarded.filter((t) => t.length > MAX_TOKEN_LENGTH)).toEqual([]);
  });

  it('limits - the node\u2019s own (degraded) check allows the same clock tolerance as the auth service', async () => {
    stack = await startStack();
    // The node has the key set cached from the service's start; then the service goes away.
    await stack.auth!.close();
    const { welcome } = await stack.session(0, 'skew-degraded', { ttl: -2 });
    expect(welcome).toMatchObject({ user: 'skew-degraded', degraded: true });
    const expired = stack.client(0, { token: await stack.token('skew-degraded-expired', { ttl: -30 }) });
    expect(await expired.closedWith()).toBe(4002);
  });

  it('limits - a token up to CLOCK_TOLERANCE_S (default 5) past exp or before nbf is accepted; one further past is not', async () => {
    stack = await startStack();
    expect((await stack.session(0, 'skew-late', { ttl: -2 })).welcome).toMatchObject({ user: 'skew-late' });
    expect((await stack.session(0, 'skew-early', { nbf: 2 })).welcome).toMatchObject({ user: 'skew-early' });
    const expired = stack.client(0, { token: await stack.token('skew-expired', { ttl: -30 }) });
    expect(await expired.closedWith()).toBe(4002);
  });
});

describe('limits - addresses and sessions (defect 8)', () => {
  it('limits - TRUST_PROXY=1 takes the rightmost X-Forwarded-For entry, not the one the client wrote', async () => {
    stack = await startStack({ gateway: { trustProxy: 1, handshakesPerIpPerSecond: 2 } });
    const token = await stack.token('xff');
    const open = (xff: string) => outcome(stack!.client(0, { token, headers: { 'x-forwarded-for': xff } }).opened);
    expect(await open('1.1.1.1, 10.0.0.9')).toBe('open');
    expect(await open('2.2.2.2, 10.0.0.9')).toBe('open');
    expect(await open('3.3.3.3, 10.0.0.9')).toBe('HTTP 429');
    expect(await open('10.0.0.8')).toBe('open');
  });

  it('limits - the client address is the X-Forwarded-For entry TRUST_PROXY places from the right', () => {
    const req = (xff?: string) =>
      ({ headers: xff === undefined ? {} : { 'x-forwarded-for': xff }, socket: { remoteAddress: '10.0.0.1' } }) as unknown as IncomingMessage;
    expect(clientAddress(req('6.6.6.6, 1.2.3.4, 10.0.0.2'), 2)).toBe('1.2.3.4');
    expect(clientAddress(req('6.6.6.6, 1.2.3.4, 10.0.0.2'), 1)).toBe('10.0.0.2');
    expect(clientAddress(req('6.6.6.6, 1.2.3.4'), 0)).toBe('10.0.0.1');
    expect(clientAddress(req(), 1)).toBe('10.0.0.1');
    // Fewer entries than trusted proxies: the leftmost, which a trusted proxy wrote.
    expect(clientAddress(req('1.2.3.4'), 3)).toBe('1.2.3.4');
    expect(clientAddress(req(`${'x'.repeat(1000)}`), 1)).toHaveLength(64);
  });

  it('limits - TRUST_PROXY takes a count; true and false still mean 1 and 0', () => {
    const trust = (v: string) => parseConfig('gateway', { trustProxy: v }).trustProxy;
    expect([trust('true'), trust('false'), trust('0'), trust('2')]).toEqual([1, 0, 0, 2]);
    expect(() => trust('yes')).toThrow(OptionError);
  });

  it('limits - a full per-IP handshake map forgets the address used longest ago instead of refusing newcomers', () => {
    let now = 0;
    const limiter = new IpLimiter({ perSecond: 1, maxIps: 2, now: () => now });
    expect(limiter.take('a')).toBe(true);
    expect(limiter.take('b')).toBe(true);
    expect(limiter.take('a')).toBe(false); // over its rate, and now the most recently used
    expect(limiter.take('c')).toBe(true); // a newcomer: 'b' makes room
    expect(limiter.size).toBe(2);
    expect(limiter.take('a')).toBe(false); // still limited: its bucket was kept
    now += 10;
    expect(limiter.take('d')).toBe(true);
    expect(limiter.size).toBe(2);
  });

  it('limits - MAX_SESSIONS_PER_IP: one more upgrade from the address gets HTTP 429 until one of its sessions ends', async () => {
    stack = await startStack({ gateway: { maxSessionsPerIp: 2 } });
    const gateway = stack.gateways[0]!;
    const first = await stack.session(0, 'ip-1');
    await stack.session(0, 'ip-2');
    expect(await outcome(stack.client(0, { token: await stack.token('ip-3') }).opened)).toBe('HTTP 429');
    first.client.close();
    await until('the first session ended on the node', () => gateway.sessions.size === 1);
    expect((await stack.session(0, 'ip-4')).welcome).toMatchObject({ user: 'ip-4' });
  });

  it('limits - refused upgrades log within the budget, and never a whole Origin', async () => {
    const { log, lines } = capturedLog();
    stack = await startStack({
      gateway: { allowedOrigins: ['https://chat.example'], handshakesPerIpPerSecond: 5, log },
    });
    const port = stack.gateways[0]!.port;
    /** A raw upgrade request; resolves with the status line. */
    const upgrade = (origin: string) =>
      new Promise<string>((resolve) => {
        const socket = tcpConnect(port, '127.0.0.1');
        let got = '';
        socket.on('data', (d) => (got += d));
        socket.on('close', () => resolve(got.split('\r\n')[0] ?? ''));
        socket.on('error', () => resolve('error'));
        socket.end(
          `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${origin}\r\n\r\n`,
        );
      });
    const evil = 'https://evil.example/' + 'A'.repeat(15_000);
    for (let i = 0; i < 50; i++) expect(await upgrade(evil)).toContain('403');
    const origins = lines.filter((l) => l.includes('origin refused'));
    expect(origins.length).toBeGreaterThan(0);
    expect(origins.length).toBeLessThanOrEqual(10);
    expect(origins.every((l) => l.length < 500 && l.includes('"originLength":15021'))).toBe(true);

    let limited = 0;
    for (let i = 0; i < 100; i++) if ((await upgrade('https://chat.example')).includes('429')) limited++;
    expect(limited).toBeGreaterThan(10);
    expect(lines.filter((l) => l.includes('handshake rate limited')).length).toBeLessThanOrEqual(10);
  });

  it('limits - MAX_SESSIONS_PER_USER: one more session of the user closes with 1013 too many sessions', async () => {
    stack = await startStack({ gateway: { maxSessionsPerUser: 2 } });
    const first = await stack.session(0, 'many');
    await stack.session(0, 'many');
    const third = stack.client(0, { token: await stack.token('many') });
    expect(await third.closedWith()).toBe(1013);
    expect(third.closeReason).toBe('too many sessions');
    expect(third.frames.filter((f) => f.type === 'welcome')).toEqual([]);
    expect((await stack.session(0, 'someone-else')).welcome).toMatchObject({ user: 'someone-else' });
    first.client.close();
    await until('the first session ended on the node', () => stack!.gateways[0]!.sessions.size === 2);
    expect((await stack.session(0, 'many')).welcome).toMatchObject({ user: 'many' });
  });

  it('limits - an upgrade whose headers never finish gets HTTP 408 and is closed after HEADERS_TIMEOUT_MS', async () => {
    stack = await startStack({ gateway: { headersTimeoutMs: 300 } });
    const received = await slowHeadersAnswer(stack.gateways[0]!.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n');
    expect(received).toMatch(/^HTTP\/1\.1 408/);
  });

  it('limits - the admin port cuts slow headers too (HTTP 408 after its HEADERS_TIMEOUT_MS)', async () => {
    stack = await startStack();
    const admin = await startAdminServer({ gateway: stack.gateways[0]!, port: 0, token: 'admin-token-for-slow-headers', headersTimeoutMs: 300 });
    cleanups.push(() => admin.close());
    const received = await slowHeadersAnswer(admin.port, 'GET /api/counts HTTP/1.1\r\nHost: x\r\n');
    expect(received).toMatch(/^HTTP\/1\.1 408/);
  });
});

describe('limits - frames (defect 8)', () => {
  it('limits - one sender cannot push 100 \u00d7 60 KB onto another user: the byte bucket refuses it and the recipient stays', async () => {
    stack = await startStack();
    const { client: sender } = await stack.session(0, 'bytes-sender');
    const { client: recipient } = await stack.session(0, 'bytes-recipient');
    const { client: other } = await stack.session(0, 'bytes-other');
    // The recipient is busy for a moment: what the node writes to it waits in its buffer.
    const socket = (recipient.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const body = 'z'.repeat(60_000);
    for (let i = 0; i < 100; i++) sender.send({ type: 'send', id: i, to: { user: 'bytes-recipient' }, body });
    // Over the byte rate, each refused send is a strike: the sender is closed, not the recipient.
    expect(await sender.closedWith(10_000)).toBe(1008);
    expect(sender.frames.filter((f) => f.type === 'error').every((f) => f.code === 'rate_limited')).toBe(true);
    socket.resume();
    await sentinel(other, recipient, 'bytes-recipient', 10_000);
    expect(recipient.closeCode).toBeUndefined();
    const delivered = recipient.messages().filter((m) => m.from === 'bytes-sender').length;
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(10);
  });

  it('limits - one user with 100 sessions cannot force 4009 on another user: the user\u2019s send budget on the node refuses it', async () => {
    stack = await startStack({ gateway: { handshakesPerIpPerSecond: 1000 } });
    const { client: victim } = await stack.session(0, 'flooded');
    const { client: reader } = await stack.session(0, 'flooded');
    const { client: other } = await stack.session(0, 'flood-other');
    // A victim session that reads nothing for now: what the node writes to it waits in its buffer.
    (victim.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const attackers = [];
    for (let i = 0; i < 100; i++) attackers.push((await stack.session(0, 'flooder')).client);
    const body = 'x'.repeat(60_000);
    // Four frames each: within every session's own byte bucket (SEND_BYTES_BURST 262144).
    const started = Date.now();
    const answers = attackers.flatMap((a) => [0, 1, 2, 3].map((n) => a.request({ type: 'send', id: n, to: { user: 'flooded' }, body }, 20_000)));
    const answered = await Promise.all(answers);
    // The barrier: a later message to the same user reaches the reading session after every
    // accepted flood message was written to both of the user's sessions.
    await sentinel(other, reader, 'flooded', 20_000);
    const flooded = [...stack.gateways[0]!.sessions.values()].filter((s) => s.actor.getSnapshot().context.user === 'flooded');
    expect(flooded).toHaveLength(2);
    const refused = answered.filter((f) => f.type === 'error');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((f) => f.code === 'rate_limited' && typeof f.retryAfterMs === 'number')).toBe(true);
    // What got through: the user's burst plus its refill over the time the flood took, no more.
    const elapsedS = (Date.now() - started) / 1000;
    const delivered = reader.messages().filter((m) => m.from === 'flooder').length;
    expect(delivered * body.length).toBeLessThanOrEqual(524_288 + 131_072 * elapsedS);
    void victim;
  }, 60_000);

  it('limits - refused frames are strikes: forbidden joins end in 1008, with one log line for the session', async () => {
    const { log, lines } = capturedLog();
    stack = await startStack({ gateway: { log } });
    const { client, welcome } = await stack.session(0, 'striker', { rooms: ['lobby'] });
    for (let i = 0; i < 50; i++) client.send({ type: 'join', id: i, room: 'secret' });
    expect(await client.closedWith()).toBe(1008);
    expect(client.closeReason).toBe('too many refused frames');
    expect(client.frames.filter((f) => f.type === 'error')).toHaveLength(10);
    const session = welcome.session as string;
    await until('the close was logged', () => lines.some((l) => l.includes(session) && l.includes('session closed')));
    expect(lines.filter((l) => l.includes(session))).toHaveLength(1);
  });

  it('limits - SEND_BYTES_BURST below MAX_MESSAGE_BYTES is a bad option', () => {
    const config = parseConfig('gateway', { maxMessageBytes: '65536', sendBytesBurst: '1000', sendBytesPerSecond: '1000' });
    expect(() => gatewayOptions(config, createLogger({ level: 'silent' }))).toThrow(/SEND_BYTES_BURST/);
  });
});

describe('limits - secrets hygiene (defect 9)', () => {
  it('limits - a signing key or CHATGATE_HOME that others can read is refused with the chmod that fixes it', async () => {
    const home = await mkdtemp(join(tmpdir(), 'chatgate-perm-'));
    cleanups.push(() => rm(home, { recursive: true, force: true }));
    await loadSigningKeys(home);
    const keyFile = join(home, 'signing-key.jwk.json');
    await chmod(keyFile, 0o644);
    await expect(loadSigningKeys(home)).rejects.toThrow(`run \`chmod 600 ${keyFile}\``);
    await chmod(keyFile, 0o600);
    await chmod(home, 0o755);
    await expect(loadSigningKeys(home)).rejects.toThrow(`run \`chmod 700 ${home}\``);
    await chmod(home, 0o700);
    await expect(loadSigningKeys(home)).resolves.toMatchObject({ alg: 'ES256' });
  });

  it('limits - a recording file is created readable by its owner only (0600)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chatgate-rec-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'node.recording.jsonl');
    stack = await startStack({ gateway: { recording: { to: 'file', path } } });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('limits - an existing recording file readable by others is made 0600; a symlink planted there is refused, its target untouched', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chatgate-rec-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'node.recording.jsonl');
    await writeFile(path, '', { mode: 0o644 });
    await chmod(path, 0o644);
    stack = await startStack({ gateway: { recording: { to: 'file', path } } });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await stack.stop();
    stack = undefined;

    const target = join(dir, 'elsewhere.txt');
    await writeFile(target, 'precious\n', { mode: 0o644 });
    const link = join(dir, 'planted.recording.jsonl');
    await symlink(target, link);
    await expect(startStack({ gateway: { recording: { to: 'file', path: link } } })).rejects.toThrow(/symbolic link/);
    expect(await readFile(target, 'utf8')).toBe('precious\n');
    expect((await stat(target)).mode & 0o777).toBe(0o644);
  });

  it('limits - the admin cookie is Secure when a trusted proxy says the page came over https, and only then', async () => {
    stack = await startStack();
    const TOKEN = 'admin-token-for-limits-0123456789';
    const admins: AdminServer[] = [];
    cleanups.push(async () => void (await Promise.all(admins.map((a) => a.close()))));
    const start = async (trustProxy: number) => {
      const admin = await startAdminServer({ gateway: stack!.gateways[0]!, port: 0, token: TOKEN, trustProxy });
      admins.push(admin);
      return admin;
    };
    const cookie = async (admin: AdminServer, headers: Record<string, string>) => {
      const res = await fetch(new URL('/login', admin.url), {
        method: 'POST',
        body: `token=${TOKEN}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        redirect: 'manual',
      });
      expect(res.status).toBe(303);
      return res.headers.get('set-cookie') ?? '';
    };
    const behindProxy = await start(1);
    expect(await cookie(behindProxy, { 'x-forwarded-proto': 'https' })).toMatch(/; Secure(;|$)/);
    expect(await cookie(behindProxy, {})).not.toMatch(/Secure/);
    // The client wrote the first entry; the trusted proxy says plain http.
    expect(await cookie(behindProxy, { 'x-forwarded-proto': 'https, http' })).not.toMatch(/Secure/);
    const direct = await start(0);
    expect(await cookie(direct, { 'x-forwarded-proto': 'https' })).not.toMatch(/Secure/);
  });
});
