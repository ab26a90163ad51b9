/**
 * `chatgate dev` (what `npm start` runs): a nats-server child process, the auth service and one
 * gateway, all on this machine, and a banner that says how to connect.
 */
import { resolve } from 'node:path';
import type { CommandConfig } from './config.ts';
import { createLogger } from './log.ts';
import { startNatsServer } from './nats-server.ts';
import { startAuthService } from './auth-service.ts';
import { startGateway } from './gateway.ts';
import { gatewayOptions, onShutdown } from './cli.ts';

export async function runDev(config: CommandConfig<'dev'>): Promise<void> {
  const log = createLogger({ level: config.logLevel });
  const nats = await startNatsServer({ port: config.natsPort, host: '127.0.0.1' });
  const stops: Array<() => Promise<void>> = [() => nats.stop()];
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
  };
  try {
    const auth = await startAuthService({ natsUrl: nats.url, home: config.home, log });
    stops.push(() => auth.close());
    const gateway = await startGateway({
      ...gatewayOptions(config, log),
      natsUrl: nats.url,
      port: config.port,
      host: '127.0.0.1',
      nodeId: 'dev',
    });
    stops.push(() => gateway.close());
    const home = resolve(config.home);
    process.stdout.write(
      [
        '',
        'chatgate dev is running',
        `  WebSocket   ${gateway.url}`,
        `  NATS        ${nats.url}`,
        `  Keys        ${home}`,
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
    onShutdown(stopAll, config.shutdownTimeoutMs + 5000);
  } catch (err) {
    await stopAll();
    throw err;
  }
}
