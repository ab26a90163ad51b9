/**
 * Starting and stopping real nats-server processes: for `chatgate nats`, `chatgate dev`, the test
 * harness and the benchmarks. Ports may be -1 (the server picks a free one); the chosen ports are
 * read back from the server's ports file, so nothing ever guesses a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { ChatgateError, ChatgateErrorCode, NATS_INSTALL_HINT } from '../errors.ts';

export interface NatsServerOptions {
  /** Client port; -1 picks a free one. @default -1 */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Route port for a cluster; -1 picks a free one. Off when undefined. */
  clusterPort?: number;
  /** Routes to other cluster members, `nats-route://host:port`. */
  routes?: string[];
  /** @default 'chatgate' when clustered */
  clusterName?: string;
  /** Monitoring port (HTTP); -1 picks a free one. Off when undefined. */
  monitorPort?: number;
  /** Enables JetStream with this store directory. */
  jetstreamDir?: string;
  /** The server's name; a JetStream cluster needs a unique, stable one per member. @default nats-server's own (random) */
  serverName?: string;
  /** Where the server's own log lines go. @default 'ignore' */
  stdio?: 'inherit' | 'ignore';
  /** How long to wait for the server to listen. @default 10000 */
  readyTimeoutMs?: number;
  /**
   * Called with the server's `stop` as soon as the process is spawned, before it listens: for a
   * caller that must be able to stop it while it is still starting (a signal during start-up).
   */
  onSpawn?: (stop: () => Promise<void>) => void;
  /**
   * A config file body with an `authorization` block (see nats-server-config.ts), written next to
   * the ports file (0600) and passed with `-c`; the flags above still set everything else.
   * Off by default: the server then lets any client do anything (the tests' open servers).
   */
  authorization?: string;
  /**
   * With `clusterPort`: routes must authenticate with this password (user `chatgate-route`), and
   * this server's routes present it. The cluster is then set in the config file, not by flags:
   * nats-server 2.9 ignores a config file's cluster `authorization` when `--cluster` is given.
   * Off by default: any server that reaches the route port may join the cluster.
   */
  routePassword?: string;
}

export interface NatsServer {
  /** `nats://host:port` for clients. */
  url: string;
  port: number;
  /** `nats-route://host:port` for other cluster members, when clustered. */
  routeUrl?: string;
  /** `http://host:port` of the monitoring endpoint, when on. */
  monitorUrl?: string;
  pid: number;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after a deadline). Safe to call twice. */
  stop(): Promise<void>;
}

/** The nats-server binary: NATS_SERVER_BIN, else the first one on PATH or in the sbin folders. */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NATS_SERVER_BIN) return env.NATS_SERVER_BIN;
  const dirs = [...(env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, 'nats-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this folder: try the next one.
    }
  }
  throw new ChatgateError(ChatgateErrorCode.natsServerMissing, NATS_INSTALL_HINT);
}

/** The command-line arguments for nats-server; exported for `chatgate nats` and its docs. */
export function natsServerArgs(options: NatsServerOptions, portsDir?: string, configFile?: string): string[] {
  const host = options.host ?? '127.0.0.1';
  const args = ['-a', host, '-p', String(options.port ?? -1)];
  if (configFile !== undefined) args.push('-c', configFile);
  if (options.monitorPort !== undefined) args.push('-m', String(options.monitorPort));
  if (options.clusterPort !== undefined && options.routePassword === undefined) {
    args.push('--cluster', `nats://${host}:${options.clusterPort}`);
    args.push('--cluster_name', options.clusterName ?? 'chatgate');
    if (options.routes?.length) args.push('--routes', options.routes.join(','));
  }
  if (options.jetstreamDir !== undefined) args.push('-js', '-sd', options.jetstreamDir);
  if (options.serverName !== undefined) args.push('--server_name', options.serverName);
  if (portsDir !== undefined) args.push('--ports_file_dir', portsDir);
  return args;
}

/** The user routes authenticate as when `routePassword` is set. */
export const ROUTE_USER = 'chatgate-route';

/** The cluster block with route authorization, when `routePassword` asks for it. */
function clusterConfig(options: NatsServerOptions): string | undefined {
  if (options.clusterPort === undefined || options.routePassword === undefined) return undefined;
  const credential = `${encodeURIComponent(ROUTE_USER)}:${encodeURIComponent(options.routePassword)}@`;
  // A route URL that carries no credential gets ours; the file is 0600 and never logged.
  const routes = (options.routes ?? []).map((r) => (r.includes('@') ? r : r.replace('://', `://${credential}`)));
  const q = JSON.stringify;
  return [
    'cluster {',
    `  name: ${q(options.clusterName ?? 'chatgate')}`,
    `  listen: ${q(`${options.host ?? '127.0.0.1'}:${options.clusterPort}`)}`,
    `  authorization { user: ${q(ROUTE_USER)}, password: ${q(options.routePassword)} }`,
    `  routes: [${routes.map((r) => q(r)).join(', ')}]`,
    '}',
    '',
  ].join('\n');
}

interface PortsFile {
  nats?: string[];
  cluster?: string[];
  monitoring?: string[];
}

async function readPortsFile(dir: string): Promise<PortsFile | undefined> {
  const name = (await readdir(dir)).find((f) => f.endsWith('.ports'));
  if (!name) return undefined;
  try {
    return JSON.parse(await readFile(join(dir, name), 'utf8')) as PortsFile;
  } catch {
    // Caught mid-write: the next poll reads it whole.
    return undefined;
  }
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const bin = findNatsServer();
  const portsDir = await mkdtemp(join(tmpdir(), 'chatgate-nats-'));
  let configFile: string | undefined;
  const config = [options.authorization, clusterConfig(options)].filter((part) => part !== undefined);
  if (config.length > 0) {
    configFile = join(portsDir, 'nats-server.conf');
    await writeFile(configFile, config.join('\n'), { mode: 0o600 });
  }
  const child = spawn(bin, natsServerArgs(options, portsDir, configFile), {
    stdio: ['ignore', options.stdio ?? 'ignore', options.stdio ?? 'ignore'],
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : 0);
      resolve();
    });
  });
  // A process that could not be spawned emits 'error' and never 'exit'.
  const spawnError = new Promise<Error>((resolve) =>
    child.once('error', (err) => {
      exitCode ??= -1;
      resolve(err);
    }),
  );

  const stop = async () => {
    if (exitCode === undefined && child.exitCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(portsDir, { recursive: true, force: true });
  };

  options.onSpawn?.(stop);
  const deadline = Date.now() + (options.readyTimeoutMs ?? 10_000);
  let ports: PortsFile | undefined;
  const failure = spawnError.then((err) =>
    (err as NodeJS.ErrnoException).code === 'ENOENT'
      ? new ChatgateError(ChatgateErrorCode.natsServerMissing, NATS_INSTALL_HINT)
      : new ChatgateError(ChatgateErrorCode.natsServerFailed, 'nats-server could not start', { cause: err }),
  );
  let failed: ChatgateError | undefined;
  void failure.then((err) => (failed = err));
  // The ports file appears once every listener is up.
  while (!ports?.nats?.[0] || (options.clusterPort !== undefined && !ports.cluster?.[0])) {
    if (failed) {
      await stop();
      throw failed;
    }
    if (exitCode !== undefined || Date.now() > deadline) {
      await stop();
      const early = await Promise.race([failure, Promise.resolve(undefined)]);
      if (early) throw early;
      throw new ChatgateError(
        ChatgateErrorCode.natsServerFailed,
        exitCode !== undefined
          ? `nats-server exited with code ${exitCode} (is the port in use?)`
          : 'nats-server did not become ready in time',
      );
    }
    await new Promise((r) => setTimeout(r, 20));
    ports = await readPortsFile(portsDir);
  }
  const url = ports.nats[0]!;
  const routeUrl = ports.cluster?.[0]?.replace(/^nats:/, 'nats-route:');
  return {
    url,
    port: portOf(url),
    routeUrl,
    monitorUrl: ports.monitoring?.[0],
    pid: child.pid!,
    process: child,
    stop,
  };
}
