/**
 * A redis-server process for the bench's Socket.IO target (bench/socketio-node.ts): started on a
 * free port, with persistence off (`--save '' --appendonly no`), stopped at the end (SIGTERM, then
 * SIGKILL after a deadline). redis-server cannot pick its own port (`--port 0` turns TCP off), so
 * the port comes from the kernel (a listener on port 0, closed again) and a start that loses the
 * race for it is retried on a new one.
 *
 * `scripts/bench-setup.sh` installs redis-server (Debian's package); `REDIS_SERVER_BIN` names
 * another binary.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REDIS_INSTALL_HINT =
  'redis-server not found: run `npm run bench:setup` (Debian: apt-get install redis-server, as root or with sudo), ' +
  'or set REDIS_SERVER_BIN, or leave the Socket.IO target out with --targets ephemeral,durable,relay,relay-js';

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export function findRedisServer(): string {
  const candidates = [
    process.env.REDIS_SERVER_BIN,
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => dir && join(dir, 'redis-server')),
    '/usr/bin/redis-server',
    '/usr/sbin/redis-server',
  ];
  for (const path of candidates) {
    if (!path) continue;
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here; the next candidate
    }
  }
  throw new Error(REDIS_INSTALL_HINT);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function startOnce(bin: string, port: number, readyTimeoutMs: number): Promise<RedisServer | undefined> {
  const child: ChildProcess = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  child.once('error', () => {}); // a spawn error is followed by 'exit'
  const deadline = Date.now() + readyTimeoutMs;
  while (!exited && Date.now() < deadline) {
    if (await canConnect(port)) {
      // Our server, not another process that took the port: ours would still be running.
      if (!exited) break;
    }
    await sleep(20);
  }
  const stop = async () => {
    if (exited) return;
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.kill('SIGTERM');
    await exit;
    clearTimeout(killer);
  };
  if (exited) return undefined;
  if (Date.now() >= deadline) {
    await stop();
    throw new Error(`redis-server did not listen on 127.0.0.1:${port} within ${readyTimeoutMs} ms`);
  }
  return { url: `redis://127.0.0.1:${port}`, port, pid: child.pid!, stop };
}

/** Starts redis-server on a free port; throws with the install hint when there is none. */
export async function startRedisServer(readyTimeoutMs = 10_000): Promise<RedisServer> {
  const bin = findRedisServer();
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = await startOnce(bin, await freePort(), readyTimeoutMs);
    if (server) return server;
  }
  throw new Error('redis-server exited at start five times (ports taken?); run it by hand to see why');
}
