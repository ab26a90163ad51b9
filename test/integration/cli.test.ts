import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { ChatgateProcess, processState, runChatgate, stopAll } from '../harness/process.ts';
import { startNats, type NatsServer } from '../harness/nats.ts';
import { TestClient } from '../harness/client.ts';
import { until } from '../harness/sync.ts';
import { machinesMarkdown } from '../../src/observe/diagrams.ts';

let home: string;
let env: NodeJS.ProcessEnv;
const clients: TestClient[] = [];
let nats: NatsServer | undefined;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'chatgate-cli-'));
  env = { CHATGATE_HOME: home };
});
afterAll(async () => {
  for (const c of clients) c.close();
  await stopAll();
  await nats?.stop();
  await rm(home, { recursive: true, force: true });
});

const nowS = () => Math.floor(Date.now() / 1000);

/** The pids of `parent`'s child processes whose command is `comm`, from /proc (Linux). */
async function childPids(parent: number, comm: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    // A process may end while we read: then it is not a child any more.
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...; comm may hold spaces, so split after its closing parenthesis.
    const match = /^(\d+) \((.*)\) \S+ (\d+)/.exec(stat);
    if (match && match[2] === comm && Number(match[3]) === parent) pids.push(Number(match[1]));
  }
  return pids;
}

/** Whether `pid` is a live process: it exists and is not a zombie. */
function isRunning(pid: number): boolean {
  const state = processState(pid);
  return state !== undefined && state !== 'Z';
}

describe('cli - token and jwks', () => {
  it('cli - token prints exactly one signed JWT with the claims asked for', async () => {
    const { code, stdout, stderr } = await runChatgate(
      ['token', '--sub', 'alice', '--rooms', 'a,b', '--ttl', '120', '--aud', 'app', '--iss', 'me', '--nbf', '30', '--jti', 'j-1'],
      env,
    );
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const claims = decodeJwt(stdout.trim());
    expect(claims).toMatchObject({ sub: 'alice', rooms: ['a', 'b'], aud: 'app', iss: 'me', jti: 'j-1' });
    expect(claims.exp! - nowS()).toBeGreaterThan(100);
    expect(claims.nbf! - nowS()).toBeGreaterThan(20);
  });

  it('cli - token --claims merges a JSON object into the payload; a bad one is one line and exit 2', async () => {
    const { code, stdout } = await runChatgate(['token', '--sub', 'carol', '--claims', '{"rooms":{"news":"r","chat":"rw"},"team":7}'], env);
    expect(code).toBe(0);
    expect(decodeJwt(stdout.trim())).toMatchObject({ sub: 'carol', rooms: { news: 'r', chat: 'rw' }, team: 7 });
    for (const bad of ['{not json', '[1,2]', '"x"']) {
      const refused = await runChatgate(['token', '--sub', 'carol', '--claims', bad], env);
      expect(refused.code).toBe(2);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      expect(refused.stderr).toContain('--claims');
    }
  });

  it('cli - a negative ttl as two arguments gives an expired token; "*" grants every room', async () => {
    const { code, stdout } = await runChatgate(['token', '--sub', 'bob', '--ttl', '-60', '--rooms', '*'], env);
    expect(code).toBe(0);
    const claims = decodeJwt(stdout.trim());
    expect(claims.exp).toBeLessThan(nowS());
    expect(claims.rooms).toBe('*');
  });

  it('cli - token options have an environment form (TOKEN_SUB, TOKEN_TTL)', async () => {
    const { code, stdout } = await runChatgate(['token'], { ...env, TOKEN_SUB: 'from-env', TOKEN_TTL: '5' });
    expect(code).toBe(0);
    const claims = decodeJwt(stdout.trim());
    expect(claims.sub).toBe('from-env');
    expect(claims.exp! - claims.iat!).toBe(5);
  });

  it('cli - a flag beats its variable', async () => {
    const { code, stdout } = await runChatgate(['token', '--sub', 'from-flag', '--ttl', '7'], {
      ...env,
      TOKEN_SUB: 'from-env',
      TOKEN_TTL: '5',
    });
    expect(code).toBe(0);
    const claims = decodeJwt(stdout.trim());
    expect(claims.sub).toBe('from-flag');
    expect(claims.exp! - claims.iat!).toBe(7);
  });

  it('cli - jwks prints the public JWK Set and no private part', async () => {
    const { code, stdout } = await runChatgate(['jwks'], env);
    expect(code).toBe(0);
    const jwks = JSON.parse(stdout) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', alg: 'ES256' });
    expect(jwks.keys[0]!.d).toBeUndefined();
  });

  it('cli - a bad option is one line on stderr and exit code 2', async () => {
    for (const args of [['gateway', '--port', 'abc'], ['gateway', '--bogus'], ['token'], ['token', '--sub', 'x', '--ttl', 'soon']]) {
      const { code, stderr } = await runChatgate(args, env);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    const { code } = await runChatgate(['gateway'], { ...env, PORT: '-5' });
    expect(code).toBe(2);
  });

  it('cli - a recording file that cannot be written is a bad option: one line, exit code 2', async () => {
    nats ??= await startNats();
    const dir = await mkdtemp(join(tmpdir(), 'chatgate-cli-record-'));
    try {
      const target = `file:${join(dir, 'missing-dir', 'rec.jsonl')}`;
      const { code, stderr } = await runChatgate(
        ['gateway', '--nats', nats.url, '--port', '0', '--host', '127.0.0.1', '--record-to', target],
        env,
      );
      expect(stderr).toContain('cannot write the recording');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(code).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cli - machines, run compiled, writes what the sources give, links to the sources included', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chatgate-cli-machines-'));
    try {
      const out = join(dir, 'machines.md');
      const { code, stderr } = await runChatgate(['machines', '--out', out], env);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(await readFile(out, 'utf8')).toBe(await machinesMarkdown(out));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cli - without nats-server the command says how to install it', async () => {
    const { code, stderr } = await runChatgate(['nats', '--port', '-1'], { ...env, NATS_SERVER_BIN: '/nonexistent/nats-server' });
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('apt-get install nats-server');
    expect(stderr).toContain('docker-free-nats.md');
  });
});

describe('cli - processes', () => {
  it('cli - dev falls back to a free NATS port when 4222 is taken, but a port set on purpose that is taken is an error', async () => {
    // The fallback is about the default port itself: 4222 is held here unless something already
    // holds it (Debian's nats-server service does), which is the situation either way.
    const holder = createServer();
    await new Promise<void>((resolve) => {
      holder.once('error', () => resolve());
      holder.listen(4222, '127.0.0.1', () => resolve());
    });
    let natsPids: number[] = [];
    try {
      const dev = new ChatgateProcess(['dev'], { ...env, PORT: '0' });
      await dev.waitFor(/nats port in use: dev mode uses a free port instead/);
      const natsUrl = (await dev.waitFor(/NATS\s+(nats:\/\/\S+)/))[1]!;
      natsPids = await childPids(dev.child.pid!, 'nats-server');
      expect(new URL(natsUrl).port).not.toBe('4222');
      // And it serves: a session on it is welcomed.
      const url = (await dev.waitFor(/WebSocket\s+(ws:\/\/\S+)/))[1]!;
      const token = (await runChatgate(['token', '--sub', 'dev-fallback'], env)).stdout.trim();
      const client = new TestClient(url, { token, via: 'protocol' });
      clients.push(client);
      expect(await client.type('welcome')).toMatchObject({ user: 'dev-fallback' });
      const code = await dev.stop();
      expect(code, `signal ${dev.child.signalCode}; stderr ${dev.stderr}; stdout ${dev.stdout.slice(-500)}`).toBe(0);
    } finally {
      await new Promise((r) => holder.close(r));
      // A dev process that died early may leave its nats-server behind: this test stops it.
      for (const pid of natsPids) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    }
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((taken.address() as AddressInfo).port);
      const { code, stdout } = await runChatgate(['dev'], { ...env, PORT: '0', NATS_PORT: port });
      expect(code).not.toBe(0);
      expect(stdout).not.toContain('chatgate dev is running');
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it('cli - nats, auth and gateway run as processes and serve a session', async () => {
    const natsProc = new ChatgateProcess(['nats', '--port', '-1'], env);
    const natsUrl = (await natsProc.waitFor(/listening on (nats:\/\/\S+)/))[1]!;
    const auth = new ChatgateProcess(['auth', '--nats', natsUrl], env);
    await auth.waitFor(/auth service ready/);
    const gateway = new ChatgateProcess(['gateway', '--nats', natsUrl, '--port', '0', '--host', '127.0.0.1', '--node-id', 'cli-node'], env);
    const port = (await gateway.waitFor(/"port":(\d+)/))[1]!;
    const token = (await runChatgate(['token', '--sub', 'proc-user'], env)).stdout.trim();
    const client = new TestClient(`ws://127.0.0.1:${port}/ws`, { token });
    clients.push(client);
    expect(await client.type('welcome')).toMatchObject({ user: 'proc-user', node: 'cli-node' });
    expect(await gateway.stop()).toBe(0);
    expect(await client.closedWith()).toBe(1001);
    expect(await auth.stop()).toBe(0);
    await natsProc.stop();
    expect(gateway.stdout + auth.stdout).not.toContain(token);
  });

  it('cli - a SIGTERM while dev starts still stops the nats-server it started', async () => {
    const dev = new ChatgateProcess(['dev'], { ...env, PORT: '0', NATS_PORT: '-1' });
    // As soon as its nats-server exists (dev is still starting: it waits for it to listen).
    let natsPid = 0;
    await until('dev started nats-server', async () => ((natsPid = (await childPids(dev.child.pid!, 'nats-server'))[0] ?? 0), natsPid > 0), 20_000);
    try {
      dev.child.kill('SIGTERM');
      expect(await dev.exited).toBe(0);
      expect(isRunning(natsPid), `nats-server ${natsPid} still runs after dev exited`).toBe(false);
    } finally {
      if (isRunning(natsPid)) process.kill(natsPid, 'SIGKILL');
    }
  });

  it('cli - dev starts nats-server, auth and a gateway, prints the URL, and stops them all', async () => {
    const dev = new ChatgateProcess(['dev'], { ...env, PORT: '0', NATS_PORT: '-1' });
    const url = (await dev.waitFor(/WebSocket\s+(ws:\/\/\S+)/))[1]!;
    await dev.waitFor(/NATS\s+nats:\/\/\S+/);
    // The nats-server dev started: its child process of that name (read from /proc).
    const natsPids = await childPids(dev.child.pid!, 'nats-server');
    expect(natsPids).toHaveLength(1);
    const natsPid = natsPids[0]!;
    try {
      const token = (await runChatgate(['token', '--sub', 'dev-user', '--rooms', 'lobby'], env)).stdout.trim();
      const client = new TestClient(url, { token, via: 'protocol' });
      clients.push(client);
      expect(await client.type('welcome')).toMatchObject({ user: 'dev-user', node: 'dev' });
      expect(await dev.stop()).toBe(0);
      expect(await client.closedWith()).toBe(1001);
      // Once dev has exited, its nats-server has exited too (gone, or a zombie not yet reaped).
      expect(isRunning(natsPid), `nats-server ${natsPid} still runs after dev exited`).toBe(false);
    } finally {
      // A nats-server that dev left behind is this test's to stop.
      if (isRunning(natsPid)) process.kill(natsPid, 'SIGKILL');
    }
  });
});
