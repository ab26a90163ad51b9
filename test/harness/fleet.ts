/**
 * chatgate as an operator runs it, for tests where a crash must show as an exit: a real
 * nats-server, then the auth service and one gateway (with its admin port) as child processes of
 * the `chatgate` CLI. Around them, what a test needs to say "the node still serves": raw HTTP to
 * either port, WebSocket sessions, its own NATS connection to publish whatever it likes, and two
 * checks, `healthy()` (both processes alive and without a line from the last resort,
 * `/healthz` 200, the admin port answers) and
 * `chats()` (a message from one live session reaches another, and a new session is admitted by
 * the auth service, not degraded). `stop()` ends all of it, also after a failure.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import { loadSigningKeys } from '../../src/auth/keys.ts';
import { mintToken, type MintOptions } from '../../src/auth/tokens.ts';
import { ChatgateProcess } from './process.ts';
import { startNats, type NatsServer } from './nats.ts';
import { TestClient, type ConnectOptions, type Frame } from './client.ts';

export interface FleetOptions {
  /** Extra environment for the gateway process (RECORD_TO, limits), given the fleet's home. */
  gatewayEnv?: (home: string) => Record<string, string>;
}

export interface Fleet {
  nats: NatsServer;
  auth: ChatgateProcess;
  gateway: ChatgateProcess;
  port: number;
  adminPort: number;
  adminToken: string;
  home: string;
  wsUrl: string;
  /** The test's own NATS connection. */
  nc: NatsConnection;
  token(sub: string, options?: Omit<MintOptions, 'sub'>): Promise<string>;
  client(options?: ConnectOptions): TestClient;
  session(sub: string, options?: Omit<MintOptions, 'sub'>): Promise<{ client: TestClient; welcome: Frame }>;
  /**
   * Follows a session on the admin port as the inspector page does (its events stream, raw
   * observations), from its first snapshot on; returns the function that stops following.
   */
  follow(session: string): Promise<() => void>;
  /** Throws unless both processes run, `/healthz` says 200 and the admin port answers. */
  healthy(): Promise<void>;
  /** Throws unless `from` reaches `to` (user `toUser`) and a new session is admitted, not degraded. */
  chats(from: TestClient, to: TestClient, toUser: string): Promise<void>;
  stop(): Promise<void>;
}

export interface RawAnswer {
  /** The first line of the answer, or '' when the connection closed without one. */
  statusLine: string;
  status: number | undefined;
  bytes: number;
}

/**
 * Writes `request` as it is on a new TCP connection, half-closes it, and collects whatever comes
 * back until the server closes (bounded).
 */
export function rawRequest(port: number, request: string | Buffer, timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of answer within ${timeoutMs} ms to ${JSON.stringify(String(request).slice(0, 80))}`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    // A reset from the server is an answer too (it refused the bytes); only a dead port fails.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const statusLine = text.split('\r\n', 1)[0] ?? '';
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
      resolve({ statusLine, status: status === undefined ? undefined : Number(status), bytes: text.length });
    });
    socket.on('connect', () => socket.end(request));
  });
}

/** The message of src/last-resort.ts's log line. */
const LAST_RESORT_LINE = '"msg":"uncaught error, serving on"';

/** Waits (bounded) until the process logs the port of `message`. */
async function portOf(p: ChatgateProcess, message: string): Promise<number> {
  const pattern = new RegExp(`"port":(\\d+)[^\\n]*"msg":"${message}"`);
  return Number((await p.waitFor(pattern, 30_000))[1]);
}

export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const home = await mkdtemp(join(tmpdir(), 'chatgate-fleet-'));
  const clients: TestClient[] = [];
  let nats: NatsServer | undefined;
  let nc: NatsConnection | undefined;
  const processes: ChatgateProcess[] = [];
  const stop = async () => {
    for (const c of clients) c.close();
    await Promise.all(processes.map((p) => p.stop()));
    if (nc) await closeNats(nc);
    await nats?.stop();
    await rm(home, { recursive: true, force: true });
  };
  try {
    nats = await startNats();
    const env = { CHATGATE_HOME: home, NATS_URL: nats.url };
    const keys = await loadSigningKeys(home);
    const auth = new ChatgateProcess(['auth'], env);
    processes.push(auth);
    await auth.waitFor(/auth service ready/, 30_000);
    const adminToken = `admin-${randomUUID()}`;
    const gateway = new ChatgateProcess(['gateway'], {
      ...env,
      PORT: '0',
      HOST: '127.0.0.1',
      NODE_ID: 'fleet',
      ADMIN_PORT: '0',
      ADMIN_TOKEN: adminToken,
      // Every test client comes from 127.0.0.1, and checks send one message per fuzz run.
      HANDSHAKES_PER_IP_PER_SECOND: '1000000',
      SENDS_PER_SECOND: '1000000',
      SEND_BURST: '1000000',
      ...options.gatewayEnv?.(home),
    });
    processes.push(gateway);
    const port = await portOf(gateway, 'gateway ready');
    const adminPort = await portOf(gateway, 'admin server ready');
    nc = await connectNats(nats.url, 'fleet-test');
    const wsUrl = `ws://127.0.0.1:${port}/ws`;

    const token = (sub: string, mint?: Omit<MintOptions, 'sub'>) => mintToken(keys, { sub, ...mint });
    const client = (connect?: ConnectOptions) => {
      const c = new TestClient(wsUrl, connect);
      clients.push(c);
      return c;
    };
    const session = async (sub: string, mint?: Omit<MintOptions, 'sub'>) => {
      const c = client({ token: await token(sub, mint) });
      return { client: c, welcome: await c.type('welcome') };
    };
    const alive = (p: ChatgateProcess, name: string) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${name} exited (${p.child.exitCode ?? p.child.signalCode}); stderr: ${p.stderr.slice(-2000)}`);
      }
    };
    const follow = async (id: string) => {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 5000);
      try {
        const res = await fetch(`http://127.0.0.1:${adminPort}/api/events?session=${encodeURIComponent(id)}`, {
          headers: { authorization: `Bearer ${adminToken}` },
          signal: abort.signal,
        });
        if (res.status !== 200) throw new Error(`events stream answered ${res.status}`);
        const reader = res.body!.getReader();
        const decoder = new TextDecoder();
        let seen = '';
        while (!seen.includes('event: snapshot')) {
          const { value, done } = await reader.read();
          if (done) throw new Error('events stream ended before its snapshot');
          seen += decoder.decode(value, { stream: true });
        }
        // The rest of the stream is left unread: ending it is all that is left to do.
        return () => abort.abort();
      } catch (err) {
        abort.abort();
        throw err;
      } finally {
        clearTimeout(timer);
      }
    };
    const healthy = async () => {
      alive(auth, 'auth service');
      alive(gateway, 'gateway');
      // The last resort is a net, not a fix: anything it caught is a bug the test must show.
      for (const [p, name] of [[auth, 'auth service'], [gateway, 'gateway']] as const) {
        const caught = p.stdout.split('\n').find((line) => line.includes(LAST_RESORT_LINE));
        if (caught) throw new Error(`${name} caught an uncaught error: ${caught.slice(0, 2000)}`);
      }
      const health = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) });
      if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`);
      const admin = await fetch(`http://127.0.0.1:${adminPort}/`, { signal: AbortSignal.timeout(5000) });
      if (admin.status !== 200) throw new Error(`admin / answered ${admin.status}`);
      await admin.arrayBuffer();
    };
    const chats = async (from: TestClient, to: TestClient, toUser: string) => {
      const nonce = randomUUID();
      const reply = await from.request({ type: 'send', id: `chk-${nonce}`, to: { user: toUser }, body: { check: nonce } });
      if (reply.type !== 'ack') throw new Error(`check message refused: ${JSON.stringify(reply)}`);
      await to.next((f) => f.type === 'message' && (f.body as { check?: string })?.check === nonce);
      const fresh = await session(`fresh-${nonce}`);
      if (fresh.welcome.degraded !== false) throw new Error('a new session was admitted degraded: no auth reply');
      fresh.client.close();
    };
    return { nats, auth, gateway, port, adminPort, adminToken, home, wsUrl, nc, token, client, session, follow, healthy, chats, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
