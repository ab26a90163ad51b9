/**
 * The locked-down bus end to end, as an operator runs it: `chatgate nats`, `chatgate auth`,
 * `chatgate gateway` and `chatgate revoke` as child processes sharing CHATGATE_HOME, and
 * `chatgate dev`. The legit roles still do everything chatgate needs; a client without a
 * credential gets nowhere; no secret shows in any output.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChatgateProcess, runChatgate, stopAll } from '../harness/process.ts';
import { TestClient } from '../harness/client.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { BUS_ROLES } from '../../src/bus/permissions.ts';
import { credentialFile, credentialsDir } from '../../src/bus/credentials.ts';
import { ChatgateErrorCode } from '../../src/errors.ts';

const homes: string[] = [];
const clients: TestClient[] = [];

async function newHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'chatgate-roles-'));
  homes.push(home);
  return home;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await stopAll();
});
afterAll(async () => {
  await Promise.all(homes.map((h) => rm(h, { recursive: true, force: true })));
});

/** Connecting without any credential must fail with our authorization error. */
async function expectAnonymousRefused(url: string): Promise<void> {
  const attempt = connectNats(url, 'test-anonymous');
  // Close it if the server let it in, so that the failure below is the only effect.
  void attempt.then(closeNats, () => {});
  await expect(attempt).rejects.toMatchObject({ code: ChatgateErrorCode.natsAuthorization });
}

/** alice and bob each in a session; alice sends to bob; bob gets it from alice. */
async function chat(url: string, env: NodeJS.ProcessEnv): Promise<{ alice: TestClient; bob: TestClient }> {
  const token = async (sub: string) => (await runChatgate(['token', '--sub', sub], env)).stdout.trim();
  const alice = new TestClient(url, { token: await token('alice') });
  const bob = new TestClient(url, { token: await token('bob') });
  clients.push(alice, bob);
  await alice.type('welcome');
  await bob.type('welcome');
  expect(await alice.request({ type: 'send', id: 1, to: { user: 'bob' }, body: 'hi bob' })).toMatchObject({ type: 'ack' });
  expect(await bob.type('message')).toMatchObject({ from: 'alice', body: 'hi bob' });
  return { alice, bob };
}

async function seeds(home: string): Promise<string[]> {
  return Promise.all(BUS_ROLES.map(async (role) => (await readFile(credentialFile(home, role), 'utf8')).trim()));
}

describe('bus - the roles as processes', () => {
  it('bus - nats, auth, gateway and revoke sharing CHATGATE_HOME: anonymous refused, two sessions chat, a revocation lands', async () => {
    const home = await newHome();
    const env = { CHATGATE_HOME: home };
    const nats = new ChatgateProcess(['nats', '--port', '-1', '--jetstream', join(home, 'js')], env);
    const natsUrl = (await nats.waitFor(/listening on (nats:\/\/\S+)/))[1]!;
    await nats.waitFor(/anonymous clients are refused/);
    expect((await stat(credentialsDir(home))).mode & 0o777).toBe(0o700);
    for (const role of BUS_ROLES) expect((await stat(credentialFile(home, role))).mode & 0o777).toBe(0o600);
    await expectAnonymousRefused(natsUrl);

    const auth = new ChatgateProcess(['auth', '--nats', natsUrl], env);
    await auth.waitFor(/auth service ready/);
    const gateway = new ChatgateProcess(['gateway', '--nats', natsUrl, '--port', '0', '--host', '127.0.0.1', '--node-id', 'roles'], env);
    const port = (await gateway.waitFor(/"port":(\d+)/))[1]!;
    const { bob } = await chat(`ws://127.0.0.1:${port}/ws`, env);

    // `chatgate revoke` asks the auth service with the auth role's credential.
    const revoke = await runChatgate(['revoke', '--nats', natsUrl, '--sub', 'bob'], env);
    expect(revoke.stderr).toBe('');
    expect(revoke.code).toBe(0);
    expect(await bob.closedWith()).toBe(4001);

    const output = [nats, auth, gateway].map((p) => p.stdout + p.stderr).join('') + revoke.stdout;
    for (const seed of await seeds(home)) expect(output).not.toContain(seed);
  });

  it('bus - chatgate nats --cluster-port/--routes forms a locked-down cluster from one CHATGATE_HOME', async () => {
    const home = await newHome();
    const env = { CHATGATE_HOME: home };
    // A JetStream cluster member needs a route to start; the seed's never resolves (RFC 2606 .invalid).
    const seed = new ChatgateProcess(['nats', '--port', '-1', '--cluster-port', '-1', '--routes', 'nats-route://chatgate-seed.invalid:4248'], env);
    const seedUrl = (await seed.waitFor(/listening on (nats:\/\/\S+)/))[1]!;
    const route = (await seed.waitFor(/cluster routes on (nats-route:\/\/\S+)/))[1]!;
    expect((await stat(join(credentialsDir(home), 'route.secret'))).mode & 0o777).toBe(0o600);
    const member = new ChatgateProcess(['nats', '--port', '-1', '--cluster-port', '-1', '--routes', route], env);
    const memberUrl = (await member.waitFor(/listening on (nats:\/\/\S+)/))[1]!;
    await expectAnonymousRefused(memberUrl);
    const receiver = await connectNats(memberUrl, 'test-receiver', { role: 'gateway', home });
    const sender = await connectNats(seedUrl, 'test-sender', { role: 'gateway', home });
    try {
      let got = false;
      receiver.subscribe('chatgate.v1.room.x', {
        callback: () => {
          got = true;
        },
      });
      await receiver.flush();
      // Bounded: until the subscription has crossed the (authenticated) route.
      const deadline = Date.now() + 10_000;
      while (!got && Date.now() < deadline) {
        sender.publish('chatgate.v1.room.x', 'hi');
        await sender.flush();
        await receiver.flush();
      }
      expect(got).toBe(true);
    } finally {
      await closeNats(sender);
      await closeNats(receiver);
    }
    const output = [seed, member].map((p) => p.stdout + p.stderr).join('');
    expect(output).not.toContain((await readFile(join(credentialsDir(home), 'route.secret'), 'utf8')).trim());
  });

  it('bus - a gateway with a wrong credential is refused in one line, naming no secret', async () => {
    const home = await newHome();
    const nats = new ChatgateProcess(['nats', '--port', '-1'], { CHATGATE_HOME: home });
    const natsUrl = (await nats.waitFor(/listening on (nats:\/\/\S+)/))[1]!;
    const stranger = await runChatgate(['gateway', '--nats', natsUrl, '--port', '0'], {
      CHATGATE_HOME: home,
      NATS_USER: 'mallory',
      NATS_PASSWORD: 'hunter2-hunter2',
    });
    expect(stranger.code).toBe(1);
    expect(stranger.stderr.trim().split('\n')).toHaveLength(1);
    expect(stranger.stderr).toContain('NATS refused NATS_USER');
    expect(stranger.stdout + stranger.stderr).not.toContain('hunter2');
  });

  it('bus - NATS credential options that cannot work together are one line and exit code 2', async () => {
    const home = await newHome();
    for (const env of [
      { NATS_USER: 'u' },
      { NATS_TOKEN: 'secret-token-1234', NATS_USER: 'u', NATS_PASSWORD: 'p' },
      { NATS_TLS_CERT: '/x.pem' },
    ]) {
      const { code, stderr } = await runChatgate(['gateway', '--port', '0'], { CHATGATE_HOME: home, ...env });
      expect(code, JSON.stringify(env)).toBe(2);
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).not.toContain('secret-token-1234');
    }
  });

  it('bus - chatgate nats --insecure is the old open server', async () => {
    const home = await newHome();
    const nats = new ChatgateProcess(['nats', '--port', '-1', '--insecure'], { CHATGATE_HOME: home });
    const natsUrl = (await nats.waitFor(/listening on (nats:\/\/\S+)/))[1]!;
    await nats.waitFor(/insecure: any client may connect/);
    const nc = await connectNats(natsUrl, 'test-anonymous');
    await closeNats(nc);
  });

  it('bus - chatgate dev runs its nats-server locked down and its own processes chat', async () => {
    const home = await newHome();
    const env = { CHATGATE_HOME: home };
    const dev = new ChatgateProcess(['dev'], { ...env, PORT: '0', NATS_PORT: '-1' });
    const url = (await dev.waitFor(/WebSocket\s+(ws:\/\/\S+)/))[1]!;
    const natsUrl = (await dev.waitFor(/NATS\s+(nats:\/\/\S+) \(locked down/))[1]!;
    await expectAnonymousRefused(natsUrl);
    await chat(url, env);
    const output = dev.stdout + dev.stderr;
    for (const seed of await seeds(home)) expect(output).not.toContain(seed);
  });
});
