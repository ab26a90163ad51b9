/**
 * One chatgate gateway node as a child process of the bench: `startGateway` with every option at
 * its default, except those given as JSON in the fourth argument (bench/gateway-options.ts says
 * which and why). Answers the bench's control requests (CPU time, memory after GC, CPU profile,
 * heap snapshot, session count, shutdown). Start with `--expose-gc`.
 *
 *   args: <natsUrl> <nodeId> [durable|ephemeral] [options JSON]   (DELIVERY; default durable)
 */
import { startGateway, type GatewayOptions } from '../src/gateway/gateway.ts';
import { createLogger } from '../src/log.ts';
import { processHandlers, serveControl } from './control.ts';

const [natsUrl, nodeId, delivery = 'durable', optionsJson = '{}'] = process.argv.slice(2);
if (!natsUrl || !nodeId || (delivery !== 'durable' && delivery !== 'ephemeral')) {
  process.stderr.write('usage: gateway-proc.ts <natsUrl> <nodeId> [durable|ephemeral] [options JSON]\n');
  process.exit(2);
}

// Warnings and errors only: the bench reads figures, not logs, and a warning is worth seeing.
const log = createLogger({ level: (process.env.BENCH_LOG_LEVEL as 'warn' | undefined) ?? 'warn', destination: process.stderr });
const gateway = await startGateway({
  natsUrl,
  nodeId,
  port: 0,
  host: '127.0.0.1',
  shutdownTimeoutMs: 3000,
  delivery,
  log,
  ...(JSON.parse(optionsJson) as Partial<GatewayOptions>),
});

serveControl(
  {
    ...processHandlers(),
    count: () => gateway.sessions.size,
    subscriptions: () => gateway.interest.size,
    shutdown: async () => {
      await gateway.close();
      setImmediate(() => process.exit(0));
      return true;
    },
  },
  { url: gateway.url, nodeId: gateway.nodeId },
);
