/**
 * What each `chatgate` command does, one handler per command. Each handler imports the modules it
 * needs when it runs, so that a short command (`chatgate token`) loads only what it uses.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { natsCredentials, OptionError, type CommandConfig, type CommandName } from '../config.ts';
import { onShutdown } from './shutdown.ts';

export const commands: { [C in CommandName]: (config: CommandConfig<C>, args: string[]) => Promise<void> } = {
  async dev(config) {
    const { runDev } = await import('./dev.ts');
    await runDev(config);
  },
  async revoke(config) {
    const { runRevoke } = await import('./revoke.ts');
    await runRevoke(config);
  },
  /** `chatgate machines`: writes the diagrams to `--out` (docs/machines.md). */
  async machines(config) {
    const { machinesMarkdown } = await import('../observe/diagrams.ts');
    const text = await machinesMarkdown(config.out);
    await mkdir(dirname(resolve(config.out)), { recursive: true });
    await writeFile(config.out, text);
    process.stdout.write(`wrote ${config.out}\n`);
  },
  /**
   * `chatgate replay FILE`: replays every recording in FILE (or one session's) and prints each.
   * Exit code 0 when all match, 1 when one diverges, 2 for a file that is not a recording.
   */
  async replay(config, args) {
    const { formatReplay, recordedMachines, replay } = await import('../observe/replay.ts');
    const { parseRecordings, RecordingFormatError } = await import('../observe/recording.ts');
    const file = args[0];
    if (!file) throw new OptionError('missing FILE: chatgate replay FILE');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new OptionError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    let parsed: ReturnType<typeof parseRecordings>;
    try {
      parsed = parseRecordings(text);
    } catch (err) {
      if (err instanceof RecordingFormatError) throw new OptionError(`${file}: ${err.message}`);
      throw err;
    }
    const recordings = parsed.recordings.filter((r) => config.session === undefined || r.header.session === config.session);
    if (recordings.length === 0) {
      throw new OptionError(`${file}: no recording${config.session === undefined ? '' : ` of session ${config.session}`}`);
    }
    let diverged = 0;
    for (const recording of recordings) {
      const result = replay(recordedMachines[recording.header.machine], recording, { toleranceMs: config.toleranceMs });
      process.stdout.write(formatReplay(result));
      if (!result.matches) diverged++;
    }
    if (parsed.orphans > 0) process.stdout.write(`(${parsed.orphans} lines of actors whose header is not in the file were left out)\n`);
    process.stdout.write(`${recordings.length - diverged} of ${recordings.length} recordings match\n`);
    if (diverged > 0) process.exitCode = 1;
  },
  async nats(config) {
    const { startNatsServer } = await import('../bus/nats-server.ts');
    const { ensureRoleCredentials, ensureRouteSecret, credentialsDir } = await import('../bus/credentials.ts');
    const { authorizationConfig } = await import('../bus/server-config.ts');
    const { nuid } = await import('@nats-io/nats-core');
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
      // From the spawn on: a signal while the server starts stops it too.
      onSpawn: (stop) => onShutdown(stop, 10_000),
    });
    process.stdout.write(`nats-server listening on ${server.url}\n`);
    process.stdout.write(`JetStream store in ${resolve(jetstreamDir)}\n`);
    if (server.routeUrl) process.stdout.write(`cluster routes on ${server.routeUrl}\n`);
    process.stdout.write(
      authorization === undefined
        ? 'insecure: any client may connect and publish or subscribe to anything\n'
        : `clients need a role credential from ${credentialsDir(config.home)} (anonymous clients are refused)\n`,
    );
    await new Promise<void>((resolve) => server.process.once('exit', () => resolve()));
  },
  async auth(config) {
    const { createLogger } = await import('../log.ts');
    const { installLastResort } = await import('../last-resort.ts');
    const { startAuthService } = await import('../auth/service.ts');
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
    const { createLogger } = await import('../log.ts');
    const { installLastResort } = await import('../last-resort.ts');
    const { startGateway } = await import('../gateway/gateway.ts');
    const { startAdminServer } = await import('../admin/server.ts');
    const { gatewayOptions } = await import('./gateway-options.ts');
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
            headersTimeoutMs: config.headersTimeoutMs,
            requestTimeoutMs: config.requestTimeoutMs,
            log,
          }).catch(
            async (err: unknown) => {
              await gateway.close();
              throw err;
            },
          );
    // Drain first (src/gateway/drain.ts); the process exits before SHUTDOWN_TIMEOUT_MS whatever happens.
    onShutdown(async () => {
      await gateway.drain();
      await admin?.close();
      await gateway.close();
    }, config.shutdownTimeoutMs);
  },
  async token(config) {
    const { loadSigningKeys } = await import('../auth/keys.ts');
    const { mintToken } = await import('../auth/tokens.ts');
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
    const { loadSigningKeys } = await import('../auth/keys.ts');
    const keys = await loadSigningKeys(config.home);
    process.stdout.write(`${JSON.stringify(keys.jwks, null, 2)}\n`);
  },
};
