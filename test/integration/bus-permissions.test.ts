/**
 * The bus as a trust boundary (issue 9, defect 4): a real nats-server 2.9 with JetStream, locked
 * down with the authorization block `chatgate nats` writes, and clients of each role connected
 * the way chatgate's processes connect (connectNats with the role's credential from
 * CHATGATE_HOME). Each attack is tried by every role that must not be able to do it.
 *
 * Proving that a message did NOT arrive, without sleeping: NATS keeps the order of one
 * connection's messages, and a server handles each client's protocol in order. So after an
 * attacker's `flush()` (a PING answered by a PONG) the server has routed whatever the attacker
 * published before; a barrier then published by a legit client reaches the subscriber after any
 * injected message. The subscriber's first message being the barrier proves absence. For
 * reading, the attacker's own `flush()` after the legit request's reply proves it was sent
 * whatever the server would have routed to it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect as connectTcp } from 'node:net';
import { startNatsServer, type NatsServer } from '../../src/bus/nats-server.ts';
import { startNatsCluster } from '../harness/nats.ts';
import { credentialFile, ensureRoleCredentials, ensureRouteSecret } from '../../src/bus/credentials.ts';
import { authorizationConfig } from '../../src/bus/server-config.ts';
import { REVOCATIONS_BUCKET, type BusRole } from '../../src/bus/permissions.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { ChatgateError, ChatgateErrorCode } from '../../src/errors.ts';
import { AUTH_QUEUE, ROOMS_STREAM, USERS_STREAM, subjects } from '../../src/subjects.ts';
import { DurableStore } from '../../src/durable/store.ts';
import { silentLogger } from '../../src/log.ts';

let home: string;
let server: NatsServer | undefined;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'chatgate-bus-'));
  const keys = await ensureRoleCredentials(home);
  server = await startNatsServer({ port: -1, jetstreamDir: join(home, 'js'), authorization: authorizationConfig(keys) });
});
// Each test starts from a bus with nobody on it.
afterEach(async () => {
  await Promise.all(connections.splice(0).map((nc) => closeNats(nc)));
});
afterAll(async () => {
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

/** A connection of `role`, with its credential from CHATGATE_HOME, and the permission errors it gets. */
async function as(role: BusRole): Promise<{ nc: NatsConnection; refused: (subject: string) => Promise<void> }> {
  const nc = await connectNats(server!.url, `test-${role}`, { role, home });
  connections.push(nc);
  const seen: InstanceType<typeof errors.PermissionViolationError>[] = [];
  const waiters: Array<() => void> = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) {
        seen.push(s.error);
        for (const w of waiters.splice(0)) w();
      }
    }
  })();
  /** Resolves once the server refused an operation on `subject`; fails after 5 s. */
  const refused = async (subject: string) => {
    const deadline = Date.now() + 5000;
    while (!seen.some((e) => e.subject === subject)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no permission violation for ${subject}; got ${seen.map((e) => e.subject).join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  return { nc, refused };
}

/** The messages a subscription got, and a wait for the first one. */
function collect(nc: NatsConnection, subject: string, queue?: string) {
  const got: Msg[] = [];
  const waiters: Array<() => void> = [];
  nc.subscribe(subject, {
    queue,
    callback: (err, msg) => {
      if (err) return; // A refused subscription: the test checks the refusal through status.
      got.push(msg);
      for (const w of waiters.splice(0)) w();
    },
  });
  const first = async () => {
    if (got.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`nothing on ${subject}`)), 5000);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return got[0]!;
  };
  return { got, first };
}

const FAKE_OK = JSON.stringify({ outcome: 'ok', claims: { sub: 'mallory', rooms: '*' } });
const ATTACKERS_OF_AUTH: BusRole[] = ['gateway', 'api'];

describe('bus - who may connect', () => {
  it('bus - a client without a credential is refused', async () => {
    const attempt = connectNats(server!.url, 'test-anonymous');
    await expect(attempt).rejects.toBeInstanceOf(ChatgateError);
    await expect(attempt).rejects.toMatchObject({ code: ChatgateErrorCode.natsAuthorization });
  });

  it('bus - a credential of another deployment is refused', async () => {
    const other = await mkdtemp(join(tmpdir(), 'chatgate-bus-other-'));
    try {
      await ensureRoleCredentials(other);
      await expect(connectNats(server!.url, 'test-stranger', { role: 'auth', home: other })).rejects.toMatchObject({
        code: ChatgateErrorCode.natsAuthorization,
      });
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

describe('bus - explicit credentials for other deployments', () => {
  it('bus - a role seed file given as NATS_NKEY_SEED_FILE works from any CHATGATE_HOME; one readable by others is refused', async () => {
    const nc = await connectNats(server!.url, 'test-seed-file', {
      role: 'gateway',
      home: join(home, 'elsewhere'),
      credentials: { nkeySeedFile: credentialFile(home, 'gateway') },
    });
    connections.push(nc);
    nc.publish(subjects.user('alice'), 'allowed for the gateway role');
    await nc.flush();
    await chmod(credentialFile(home, 'api'), 0o644);
    try {
      await expect(connectNats(server!.url, 'test-open-seed', { role: 'api', home })).rejects.toMatchObject({
        code: ChatgateErrorCode.natsCredentials,
      });
    } finally {
      await chmod(credentialFile(home, 'api'), 0o600);
    }
  });

  it('bus - NATS_USER/NATS_PASSWORD and NATS_TOKEN reach a server that uses them, and a wrong one is refused naming no secret', async () => {
    const byPassword = await startNatsServer({ port: -1, authorization: 'authorization { user: "ops", password: "pw-0123456789" }\n' });
    const byToken = await startNatsServer({ port: -1, authorization: 'authorization { token: "tk-0123456789" }\n' });
    try {
      await closeNats(await connectNats(byPassword.url, 'test-user', { credentials: { user: 'ops', password: 'pw-0123456789' } }));
      await closeNats(await connectNats(byToken.url, 'test-token', { credentials: { token: 'tk-0123456789' } }));
      const wrong = connectNats(byPassword.url, 'test-wrong', { credentials: { user: 'ops', password: 'pw-wrong-secret' } });
      await expect(wrong).rejects.toMatchObject({ code: ChatgateErrorCode.natsAuthorization });
      expect(((await wrong.catch((e: unknown) => e)) as Error).message).not.toContain('pw-wrong-secret');
      await expect(connectNats(byToken.url, 'test-none')).rejects.toMatchObject({ code: ChatgateErrorCode.natsAuthorization });
    } finally {
      await byPassword.stop();
      await byToken.stop();
    }
  });
});

describe('bus - tokens on auth.verify', () => {
  it('bus - no role but auth can read the tokens sent to the auth service', async () => {
    const auth = await as('auth');
    const asker = await as('gateway');
    auth.nc.subscribe(subjects.authVerify, {
      queue: AUTH_QUEUE,
      callback: (_e, m) => {
        m.respond(FAKE_OK);
      },
    });
    await auth.nc.flush();
    const spies = [];
    for (const role of ATTACKERS_OF_AUTH) {
      const attacker = await as(role);
      for (const subject of [subjects.authVerify, 'chatgate.v1.auth.*', 'chatgate.v1.>', '>']) {
        spies.push({ attacker, ...collect(attacker.nc, subject) });
        await attacker.refused(subject);
      }
      // In the auth service's own queue group, to be handed half the requests.
      spies.push({ attacker, ...collect(attacker.nc, subjects.authVerify, AUTH_QUEUE) });
    }
    for (let i = 0; i < 4; i++) {
      const reply = await asker.nc.request(subjects.authVerify, JSON.stringify({ token: `secret-${i}` }), { timeout: 2000 });
      expect(reply.json()).toMatchObject({ outcome: 'ok' });
    }
    for (const spy of spies) {
      await spy.attacker.nc.flush();
      expect(spy.got).toEqual([]);
    }
  });

  it('bus - no role but auth can answer an auth request with an ok verdict', async () => {
    const asker = await as('gateway');
    for (const role of ATTACKERS_OF_AUTH) {
      const attacker = await as(role);
      attacker.nc.subscribe(subjects.authVerify, {
        // A refused subscription calls back once with the error and no message.
        callback: (err, m) => {
          if (!err) m.respond(FAKE_OK);
        },
      });
      await attacker.refused(subjects.authVerify);
      // Nor can it write into the gateways' reply inboxes directly.
      attacker.nc.publish('_INBOX_gateway.guess.1', FAKE_OK);
      await attacker.refused('_INBOX_gateway.guess.1');
    }
    // No auth service runs: nobody may answer, so the request finds no responder.
    await expect(asker.nc.request(subjects.authVerify, JSON.stringify({ token: 't' }), { timeout: 2000 })).rejects.toBeInstanceOf(
      errors.RequestError,
    );
  });
});

describe('bus - keys and revocations', () => {
  it('bus - no role but auth can announce a key set', async () => {
    const gateway = await as('gateway');
    const auth = await as('auth');
    const announce = collect(gateway.nc, subjects.authJwksAnnounce);
    await gateway.nc.flush();
    for (const role of ATTACKERS_OF_AUTH) {
      const attacker = await as(role);
      attacker.nc.publish(subjects.authJwksAnnounce, JSON.stringify({ keys: [{ kty: 'EC', kid: 'mallory' }] }));
      await attacker.refused(subjects.authJwksAnnounce);
      await attacker.nc.flush();
    }
    auth.nc.publish(subjects.authJwksAnnounce, 'barrier');
    expect((await announce.first()).string()).toBe('barrier');
  });

  it('bus - no role but auth can ask an auth service to record a revocation', async () => {
    const auth = await as('auth');
    const requests = collect(auth.nc, subjects.authRevoke, AUTH_QUEUE);
    await auth.nc.flush();
    for (const role of ATTACKERS_OF_AUTH) {
      const attacker = await as(role);
      attacker.nc.publish(subjects.authRevoke, JSON.stringify({ sub: 'alice', at: 4_000_000_000 }));
      await attacker.refused(subjects.authRevoke);
      await attacker.nc.flush();
    }
    // `chatgate revoke` connects with the auth role.
    const revoker = await as('auth');
    revoker.nc.publish(subjects.authRevoke, 'barrier');
    expect((await requests.first()).string()).toBe('barrier');
  });
});

describe('bus - frames', () => {
  it('bus - no role but gateway can inject a frame into a user or room subject', async () => {
    const gateway = await as('gateway');
    const user = collect(gateway.nc, subjects.user('alice'));
    const room = collect(gateway.nc, subjects.room('lobby'));
    await gateway.nc.flush();
    const forged = JSON.stringify({ from: 'alice', body: 'send me your password' });
    for (const role of ['auth', 'api'] as const) {
      const attacker = await as(role);
      for (const subject of [subjects.user('alice'), subjects.room('lobby')]) {
        attacker.nc.publish(subject, forged);
        await attacker.refused(subject);
      }
      await attacker.nc.flush();
    }
    const other = await as('gateway');
    other.nc.publish(subjects.user('alice'), 'barrier');
    other.nc.publish(subjects.room('lobby'), 'barrier');
    expect((await user.first()).string()).toBe('barrier');
    expect((await room.first()).string()).toBe('barrier');
  });
});

describe('bus - the revocations bucket', () => {
  it('bus - the auth role creates and writes the bucket; the gateway role reads and watches it; nobody else writes', async () => {
    const auth = await as('auth');
    const written = await new Kvm(auth.nc).create(REVOCATIONS_BUCKET, { history: 1 });
    await written.put('jti.a', JSON.stringify({ jti: 'a', at: 1 }));
    // Every auth service that starts creates it again (the first one made it).
    const again = await as('auth');
    await new Kvm(again.nc).create(REVOCATIONS_BUCKET, { history: 1 });
    const owner = await jetstreamManager(again.nc);
    const { config } = await owner.streams.info(`KV_${REVOCATIONS_BUCKET}`);
    await owner.streams.update(config.name, { ...config, max_age: 3_600_000_000_000 });

    const gateway = await as('gateway');
    const read = await new Kvm(gateway.nc).open(REVOCATIONS_BUCKET);
    expect((await read.get('jti.a'))?.json()).toEqual({ jti: 'a', at: 1 });
    // Direct get above; the stream leader's MSG.GET here (what a bucket without direct get uses).
    const fromLeader = await new Kvm(gateway.nc).open(REVOCATIONS_BUCKET, { allow_direct: false });
    expect((await fromLeader.get('jti.a'))?.json()).toEqual({ jti: 'a', at: 1 });
    await expect(fromLeader.update('jti.a', '{}', 1)).rejects.toThrow();
    await expect(fromLeader.create('jti.c', '{}')).rejects.toThrow();
    const keys: string[] = [];
    for await (const k of await read.keys()) keys.push(k);
    expect(keys).toEqual(['jti.a']);
    const watch = await read.watch();
    const seen: string[] = [];
    const watched = (async () => {
      for await (const entry of watch) {
        seen.push(`${entry.operation} ${entry.key}`);
        if (entry.key === 'jti.b') break;
      }
    })();
    await written.put('jti.b', JSON.stringify({ jti: 'b', at: 2 }));
    await watched;
    expect(seen).toEqual(['PUT jti.a', 'PUT jti.b']);

    // A stolen gateway credential cannot lock anyone out, nor undo a revocation.
    await expect(read.put('sub.alice', JSON.stringify({ sub: 'alice', at: 4_000_000_000 }))).rejects.toThrow();
    await gateway.refused(`$KV.${REVOCATIONS_BUCKET}.sub.alice`);
    await expect(read.delete('jti.a')).rejects.toThrow();
    await expect(read.purge('jti.b')).rejects.toThrow();
    const jsm = await jetstreamManager(gateway.nc, { checkAPI: false });
    const stream = `KV_${REVOCATIONS_BUCKET}`;
    await expect(jsm.streams.purge(stream)).rejects.toThrow();
    await expect(jsm.streams.delete(stream)).rejects.toThrow();
    await expect(jsm.streams.update(stream, { max_age: 1 })).rejects.toThrow();
    await expect(read.destroy()).rejects.toThrow();
    await expect(new Kvm(gateway.nc).create('mallory')).rejects.toThrow();

    // The api role cannot even read it (opening binds without asking the server; reading asks).
    const api = await as('api');
    await expect(new Kvm(api.nc).open(REVOCATIONS_BUCKET).then((kv) => kv.get('jti.a'))).rejects.toThrow();
    await expect(new Kvm(api.nc).open(REVOCATIONS_BUCKET).then((kv) => kv.put('sub.alice', '{}'))).rejects.toThrow();
    await expect(jetstreamManager(api.nc).then((m) => m.streams.purge(stream))).rejects.toThrow();

    // Everything the auth role wrote is still there, and nothing else.
    const after: string[] = [];
    for await (const k of await written.keys()) after.push(k);
    expect(after.sort()).toEqual(['jti.a', 'jti.b']);
    expect((await written.get('jti.a'))?.json()).toEqual({ jti: 'a', at: 1 });
  });
});

/**
 * Speaks the route protocol to a cluster port as a server that is not a member would: reads the
 * INFO, sends a route CONNECT (with `user`/`pass` when given) and a PING. Resolves with the first
 * line after INFO: `PONG` (admitted) or the `-ERR` that refused it.
 */
function tryRoute(routeUrl: string, user?: string, pass?: string): Promise<string> {
  const { hostname, port } = new URL(routeUrl);
  return new Promise((resolve, reject) => {
    const socket = connectTcp(Number(port), hostname);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the route port said nothing'));
    }, 5000);
    let buffer = '';
    let greeted = false;
    socket.on('data', (d: Buffer) => {
      buffer += d.toString();
      for (let i = buffer.indexOf('\r\n'); i >= 0; i = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (!greeted && line.startsWith('INFO ')) {
          greeted = true;
          const connect = { verbose: false, pedantic: false, tls_required: false, name: 'rogue', cluster: 'chatgate', user, pass };
          socket.write(`CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`);
        } else if (greeted && (line === 'PONG' || line.startsWith('-ERR'))) {
          clearTimeout(timer);
          socket.destroy();
          resolve(line);
        }
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

describe('bus - a locked-down cluster', () => {
  it('bus - three members share the users: roles work across members, anonymous clients and non-members are refused', async () => {
    const keys = await ensureRoleCredentials(home);
    const cluster = await startNatsCluster(3, { authorization: authorizationConfig(keys), routePassword: await ensureRouteSecret(home) });
    const opened: NatsConnection[] = [];
    try {
      const on = async (i: number, role: BusRole) => {
        const nc = await connectNats(cluster.servers[i]!.url, `test-${role}-${i}`, { role, home });
        opened.push(nc);
        return nc;
      };
      for (const member of cluster.servers) {
        await expect(connectNats(member.url, 'test-anonymous')).rejects.toMatchObject({ code: ChatgateErrorCode.natsAuthorization });
      }
      // A gateway on member 0 delivers to a gateway on member 1 …
      const receiver = await on(1, 'gateway');
      const inbox = collect(receiver, subjects.user('alice'));
      await receiver.flush();
      const sender = await on(0, 'gateway');
      const deadline = Date.now() + 5000;
      // … once member 0 knows of the subscription on member 1 (interest crosses routes asynchronously).
      while (inbox.got.length === 0 && Date.now() < deadline) {
        sender.publish(subjects.user('alice'), 'hello');
        await sender.flush();
        await receiver.flush();
      }
      expect(inbox.got[0]?.string()).toBe('hello');
      // … and an auth service on member 2 answers a gateway on member 0.
      const auth = await on(2, 'auth');
      auth.subscribe(subjects.authVerify, {
        queue: AUTH_QUEUE,
        callback: (_e, m) => {
          m.respond(FAKE_OK);
        },
      });
      await auth.flush();
      let verdict: unknown;
      while (verdict === undefined && Date.now() < deadline) {
        verdict = await sender.request(subjects.authVerify, '{"token":"t"}', { timeout: 1000 }).then(
          (m) => m.json(),
          () => undefined, // No responder yet: the subscription has not crossed the route.
        );
      }
      expect(verdict).toMatchObject({ outcome: 'ok' });
      // A server without the route password cannot join and bypass the permissions.
      const seed = cluster.servers[0]!.routeUrl!;
      expect(await tryRoute(seed)).toMatch(/^-ERR 'Authorization Violation'/);
      expect(await tryRoute(seed, 'chatgate-route', 'guessed')).toMatch(/^-ERR 'Authorization Violation'/);
    } finally {
      await Promise.all(opened.map((nc) => closeNats(nc)));
      await cluster.stop();
    }
  });
});

describe('bus - the message streams of durable delivery', () => {
  it('bus - the gateway role makes the streams, stores and reads messages, and can neither change nor erase them; other roles cannot touch them', async () => {
    const gateway = await as('gateway');
    const store = await DurableStore.open(gateway.nc, { maxPerTarget: 10 }, silentLogger);
    // Every gateway that starts makes them again: the first one made them.
    const again = await DurableStore.open((await as('gateway')).nc, { maxPerTarget: 10 }, silentLogger);
    expect(again.epochs).toEqual(store.epochs);
    const ack = await store.publish(subjects.storedUser('alice'), 'stored');
    expect(await store.lastSeq('user', subjects.storedUser('alice'))).toBe(ack.seq);
    expect((await store.next('user', subjects.storedUser('alice'), 1))?.string()).toBe('stored');

    const jsm = await jetstreamManager(gateway.nc, { checkAPI: false });
    for (const stream of [USERS_STREAM, ROOMS_STREAM]) {
      await expect(jsm.streams.update(stream, { max_age: 1 })).rejects.toThrow();
      await expect(jsm.streams.purge(stream)).rejects.toThrow();
      await expect(jsm.streams.delete(stream)).rejects.toThrow();
      await expect(jsm.streams.deleteMessage(stream, ack.seq)).rejects.toThrow();
      await expect(jsm.consumers.add(stream, { name: 'mallory' })).rejects.toThrow();
    }
    await expect(jsm.streams.add({ name: 'MALLORY', subjects: ['mallory.>'] })).rejects.toThrow();

    for (const role of ['auth', 'api'] as const) {
      const other = await as(role);
      await expect(DurableStore.open(other.nc, {}, silentLogger)).rejects.toThrow();
      other.nc.publish(subjects.storedUser('alice'), 'injected');
      await other.refused(subjects.storedUser('alice'));
      const m = await jetstreamManager(other.nc, { checkAPI: false });
      await expect(m.streams.getMessage(USERS_STREAM, { seq: ack.seq })).rejects.toThrow();
    }
    // Nothing but the gateway's message was stored.
    expect(await store.lastSeq('user', subjects.storedUser('alice'))).toBe(ack.seq);
  });
});
