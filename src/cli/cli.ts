/**
 * The `chatgate` command. Parsing is commander's; every option's flag, environment form and
 * default come from the table in config.ts. A bad option: one line on stderr, exit code 2.
 */
import { writeFile } from 'node:fs/promises';
import { nuid } from '@nats-io/nats-core';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { commandOptions, natsCredentials, OptionError, parseConfig, type CommandConfig, type CommandName } from '../config.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';
import { loadSigningKeys } from '../auth/keys.ts';
import { mintToken } from '../auth/tokens.ts';
import { startAuthService } from '../auth/service.ts';
import { startGateway, type GatewayOptions } from '../gateway/gateway.ts';
import { startNatsServer } from '../bus/nats-server.ts';
import { ensureRoleCredentials, ensureRouteSecret, credentialsDir } from '../bus/credentials.ts';
import { authorizationConfig } from '../bus/server-config.ts';
import { runDev } from './dev.ts';
import { runRevoke } from './revoke.ts';
import { runMachines } from '../observe/diagrams.ts';
import { runReplay } from '../observe/replay.ts';
import { startAdminServer } from '../admin/server.ts';
import { installLastResort } from '../last-resort.ts';

const descriptions: Record<CommandName, string> = {
  dev: 'run nats-server, the auth service and one gateway on this machine',
  nats: 'run a nats-server (single node or cluster member)',
  auth: 'run the auth service',
  gateway: 'run a gateway node',
  token: 'print one signed JWT (dev keys)',
  jwks: 'print the public JWK Set (dev keys)',
  revoke: 'revoke a token (--jti) or every token of a user (--sub) on every node',
  machines: 'write the state machine diagrams (Mermaid) to docs/machines.md',
  replay: 'replay recorded actors (FILE) through their machines: exit 0 if all match, 1 if one diverges, 2 for a bad file',
};

/** Gateway options shared by `gateway` and `dev`. */
export function gatewayOptions(config: CommandConfig<'gateway'> | CommandConfig<'dev'>, log: Logger): GatewayOptions {
  // A send frame must fit in the byte bucket, or the largest allowed frame could never be sent.
  if (config.sendBytesBurst < config.maxMessageBytes) {
    throw new OptionError('--send-bytes-burst (SEND_BYTES_BURST) must be at least --max-message-bytes (MAX_MESSAGE_BYTES)');
  }
  return {
    authTimeoutMs: config.authTimeoutMs,
    authRequestTimeoutMs: config.authRequestTimeoutMs,
    maxMessageBytes: config.maxMessageBytes,
    maxBufferedBytes: config.maxBufferedBytes,
    allowedOrigins: config.allowedOrigins,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    degradedPolicy: config.degradedPolicy,
    recheckPerSecond: config.recheckPerSecond,
    rules: { issuer: config.issuer, audience: config.audience, maxLifetimeS: config.maxTokenLifetimeS },
    maxConnections: config.maxConnections,
    handshakesPerIpPerSecond: config.handshakesPerIpPerSecond,
    trustProxy: config.trustProxy,
    maxSessionsPerUser: config.maxSessionsPerUser,
    maxSessionsPerIp: config.maxSessionsPerIp,
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    clockToleranceS: config.clockToleranceS,
    metricsToken: config.metricsToken,
    apiToken: config.apiToken,
    presenceMaxUsers: config.presenceMaxUsers,
    presenceHeartbeatMs: config.presenceHeartbeatMs,
    presenceNodeTimeoutMs: config.presenceNodeTimeoutMs,
    recording: recordingOptions(config),
    limits: {
      expiryWarningMs: config.expiryWarningMs,
      sendsPerSecond: config.sendsPerSecond,
      sendBurst: config.sendBurst,
      sendBytesPerSecond: config.sendBytesPerSecond,
      sendBytesBurst: config.sendBytesBurst,
      maxStrikes: config.maxStrikes,
      maxRooms: config.maxRoomsPerSession,
      signalsPerSecond: config.signalsPerSecond,
      signalBurst: config.signalBurst,
    },
    log,
  };
}

/** `--record-to` with its filters; a filter without a target is a mistake. */
function recordingOptions(config: CommandConfig<'gateway'> | CommandConfig<'dev'>): GatewayOptions['recording'] {
  if (!config.recordTo) {
    if (config.recordUser !== undefined || config.recordSession !== undefined) {
      throw new OptionError('--record-user and --record-session need --record-to (RECORD_TO)');
    }
    return undefined;
  }
  return { ...config.recordTo, user: config.recordUser, session: config.recordSession };
}

/** Runs `stop` once on SIGINT or SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(stop: () => Promise<void>, deadlineMs: number): void {
  let stopping = false;
  const handler = () => {
    if (stopping) process.exit(1);
    stopping = true;
    setTimeout(() => process.exit(1), deadlineMs).unref();
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

const run: { [C in CommandName]: (config: CommandConfig<C>, args: string[]) => Promise<void> } = {
  dev: runDev,
  replay: runReplay,
  revoke: runRevoke,
  machines: runMachines,
  async nats(config) {
    // Locked down unless asked: one nkey user per role, anonymous clients refused.
    const authorization = config.insecure ? undefined : authorizationConfig(await ensureRoleCredentials(config.home));
    // The same block for operators who run nats-server with their own config (`include` it).
    if (authorization !== undefined) await writeFile(join(credentialsDir(config.home), 'authorization.conf'), authorization, { mode: 0o600 });
    // A locked-down cluster also locks its routes: members share the route password in the same folder.
    const routePassword =
      config.insecure || config.clusterPort === undefined ? undefined : await ensureRouteSecret(config.home);
    const jetstreamDir = config.jetstream ?? join(config.home, 'jetstream');
    const server = await startNatsServer({
      authorization,
      routePassword,
      port: config.port,
      host: config.host,
      clusterPort: config.clusterPort,
      routes: config.routes,
      jetstreamDir,
      // JetStream cluster members need stable, unique names.
      serverName:
        config.serverName ??
        (config.clusterPort === undefined
          ? undefined
          : `chatgate-${hostname()}-${config.port > 0 ? config.port : nuid.next().slice(-8)}`),
      stdio: 'inherit',
    });
    process.stdout.write(`nats-server listening on ${server.url}\n`);
    process.stdout.write(`JetStream store in ${resolve(jetstreamDir)}\n`);
    if (server.routeUrl) process.stdout.write(`cluster routes on ${server.routeUrl}\n`);
    process.stdout.write(
      authorization === undefined
        ? 'insecure: any client may connect and publish or subscribe to anything\n'
        : `clients need a role credential from ${credentialsDir(config.home)} (anonymous clients are refused)\n`,
    );
    onShutdown(() => server.stop(), 10_000);
    await new Promise<void>((resolve) => server.process.once('exit', () => resolve()));
  },
  async auth(config) {
    const log = createLogger({ level: config.logLevel });
    installLastResort(log);
    const service = await startAuthService({
      natsUrl: config.nats,
      home: config.home,
      jwksUrl: config.jwksUrl,
      rules: { issuer: config.issuer, audience: config.audience, maxLifetimeS: config.maxTokenLifetimeS },
      revocationReplicas: config.revocationReplicas,
      clockToleranceS: config.clockToleranceS,
      natsCredentials: natsCredentials(config),
      log,
    });
    onShutdown(() => service.close(), 10_000);
  },
  async gateway(config) {
    // The admin port shows every connection: never open without a token.
    if (config.adminPort !== undefined && config.adminToken === undefined) {
      throw new OptionError('--admin-port (ADMIN_PORT) needs --admin-token (ADMIN_TOKEN)');
    }
    const log = createLogger({ level: config.logLevel });
    installLastResort(log);
    const gateway = await startGateway({
      ...gatewayOptions(config, log),
      natsUrl: config.nats,
      natsHome: config.home,
      natsCredentials: natsCredentials(config),
      port: config.port,
      host: config.host,
      nodeId: config.nodeId,
    });
    const admin =
      config.adminPort === undefined
        ? undefined
        : await startAdminServer({
            gateway,
            port: config.adminPort,
            host: config.adminHost,
            token: config.adminToken!,
            trustProxy: config.trustProxy,
            log,
          }).catch(
            async (err: unknown) => {
              await gateway.close();
              throw err;
            },
          );
    onShutdown(async () => {
      await admin?.close();
      await gateway.close();
    }, config.shutdownTimeoutMs + 5000);
  },
  async token(config) {
    const keys = await loadSigningKeys(config.home);
    const rooms = config.rooms === undefined ? undefined : config.rooms.join(',') === '*' ? '*' : config.rooms;
    const token = await mintToken(keys, {
      sub: config.sub!,
      rooms,
      ttl: config.ttl,
      aud: config.aud,
      iss: config.iss,
      nbf: config.nbf,
      jti: config.jti,
      claims: config.claims,
    });
    process.stdout.write(`${token}\n`);
  },
  async jwks(config) {
    const keys = await loadSigningKeys(config.home);
    process.stdout.write(`${JSON.stringify(keys.jwks, null, 2)}\n`);
  },
};

/** Positional arguments, for the commands that take one. */
const commandArguments: Partial<Record<CommandName, string>> = { replay: '<file>' };

function buildProgram(): Command {
  const program = new Command('chatgate')
    .description('a horizontally scaled WebSocket chat gateway')
    .exitOverride()
    .showSuggestionAfterError(false);
  for (const name of Object.keys(commandOptions) as CommandName[]) {
    const command = program.command(name).description(descriptions[name]).exitOverride();
    // Each table key is the camelCase of its flag, which is the name commander files it under.
    for (const spec of Object.values(commandOptions[name])) {
      const option = new Option(spec.flag, spec.description).env(spec.env);
      if ('default' in spec && spec.default !== undefined) option.default(spec.default);
      command.addOption(option);
    }
    const argument = commandArguments[name];
    if (argument) command.argument(argument);
    // Commander passes the positional arguments first, then the options and the command.
    command.action(async (...params: unknown[]) => {
      const raw = params.at(-2) as Record<string, unknown>;
      const args = params.slice(0, -2) as string[];
      const config = parseConfig(name, raw);
      if (name === 'token' && (config as CommandConfig<'token'>).sub === undefined) {
        throw new OptionError('missing --sub (TOKEN_SUB)');
      }
      await (run[name] as (c: typeof config, a: string[]) => Promise<void>)(config, args);
    });
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version print and succeed; every other parse error was printed by commander.
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    if (err instanceof OptionError) {
      process.stderr.write(`chatgate: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof ChatgateError) {
      process.stderr.write(`chatgate: ${err.message}\n`);
      process.exit(err.code === ChatgateErrorCode.badOption ? 2 : 1);
    }
    process.stderr.write(`chatgate: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
