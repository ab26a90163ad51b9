/**
 * `chatgate dev` (what `npm start` runs): a nats-server child process, locked down like
 * `chatgate nats` (role credentials in CHATGATE_HOME/nats), the auth service and one gateway, all on this machine, its admin server with the inspector and the demo chat page (whose
 * token endpoint exists only here), and a banner that says how to connect.
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { CommandConfig } from '../config.ts';
import { createLogger, type Logger } from '../log.ts';
import { startNatsServer, type NatsServer } from '../bus/nats-server.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { startAuthService } from '../auth/service.ts';
import { startGateway } from '../gateway/gateway.ts';
import { gatewayOptions } from './gateway-options.ts';
import { onShutdown } from './shutdown.ts';
import { startAdminServer } from '../admin/server.ts';
import { loadSigningKeys } from '../auth/keys.ts';
import { mintToken } from '../auth/tokens.ts';
import { credentialsDir, ensureRoleCredentials } from '../bus/credentials.ts';
import { authorizationConfig } from '../bus/server-config.ts';
import { installLastResort } from '../last-resort.ts';

const DEFAULT_NATS_PORT = 4222;

/**
 * The nats-server child. When the default port is taken (Debian's nats-server package starts a
 * system service on 4222), dev mode takes any free port instead and says so; a port set on
 * purpose that is taken is an error.
 */
async function startDevNats(
  port: number,
  home: string,
  jetstreamDir: string,
  log: Logger,
  onSpawn: (stop: () => Promise<void>) => void,
): Promise<NatsServer> {
  const authorization = authorizationConfig(await ensureRoleCredentials(home));
  try {
    return await startNatsServer({ port, host: '127.0.0.1', authorization, jetstreamDir, onSpawn });
  } catch (err) {
    if (port !== DEFAULT_NATS_PORT || !(err instanceof ChatgateError) || err.code !== ChatgateErrorCode.natsServerFailed) {
      throw err;
    }
    log.warn({ port }, 'nats port in use: dev mode uses a free port instead');
    return startNatsServer({ port: -1, host: '127.0.0.1', authorization, jetstreamDir, onSpawn });
  }
}

export async function runDev(config: CommandConfig<'dev'>): Promise<void> {
  const log = createLogger({ level: config.logLevel });
  installLastResort(log);
  const stops: Array<() => Promise<void>> = [];
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
  };
  // Before anything starts: a signal during start-up still stops every child started so far.
  onShutdown(stopAll, config.shutdownTimeoutMs + 5000);
  // JetStream holds the revocations; its store survives dev runs that share CHATGATE_HOME.
  try {
    // Its stop is listed as soon as it is spawned: a signal while it starts stops it too.
    const nats = await startDevNats(config.natsPort, config.home, config.jetstream ?? join(config.home, 'jetstream'), log, (stop) =>
      stops.push(stop),
    );
    const auth = await startAuthService({
      natsUrl: nats.url,
      home: config.home,
      rules: { issuer: config.issuer, audience: config.audience, maxLifetimeS: config.maxTokenLifetimeS },
      clockToleranceS: config.clockToleranceS,
      log,
    });
    stops.push(() => auth.close());
    const gateway = await startGateway({
      ...gatewayOptions(config, log),
      natsUrl: nats.url,
      natsHome: config.home,
      port: config.port,
      host: '127.0.0.1',
      nodeId: 'dev',
    });
    stops.push(() => gateway.close());
    // The admin token: the one configured, else a new one each run, shown in the banner only.
    const adminToken = config.adminToken ?? randomBytes(24).toString('base64url');
    const keys = await loadSigningKeys(config.home);
    const admin = await startAdminServer({
      gateway,
      port: config.adminPort,
      host: '127.0.0.1',
      token: adminToken,
      headersTimeoutMs: config.headersTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      log,
      demo: {
        mint: (user) =>
          mintToken(keys, { sub: user, rooms: '*', ttl: 3600, iss: config.issuer, aud: config.audience }),
      },
    });
    stops.push(() => admin.close());
    const home = resolve(config.home);
    process.stdout.write(
      [
        '',
        'chatgate dev is running',
        `  WebSocket   ${gateway.url}`,
        `  NATS        ${nats.url} (locked down: role credentials in ${resolve(credentialsDir(config.home))})`,
        `  Keys        ${home}`,
        `  Inspector   ${admin.url}`,
        `  Admin token ${config.adminToken === undefined ? adminToken : '(from ADMIN_TOKEN)'}`,
        `  Demo chat   ${admin.url}demo`,
        '',
        'Open the demo chat in two tabs to chat; log into the inspector with the admin token.',
        '',
        'Mint a token (same CHATGATE_HOME), then connect with it:',
        `  TOKEN=$(CHATGATE_HOME=${home} npx chatgate token --sub alice --rooms lobby)`,
        `  npx wscat -c ${gateway.url} -H "Authorization: Bearer $TOKEN"`,
        '',
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
    // nats-server is our child: if it dies, so does dev mode.
    nats.process.once('exit', () => {
      if (stopping) return;
      log.error('nats-server exited');
      void stopAll().then(() => process.exit(1));
    });
  } catch (err) {
    // A signal stopped what was starting: the signal's handler is stopping everything and exits 0.
    if (stopping) return;
    await stopAll();
    throw err;
  }
}
