/**
 * One chatgate gateway node as a child process of `bench/run.ts`: `startGateway` with the limits
 * that would throttle a benchmark lifted, everything else at its default (bench/gateway-options.ts
 * says which and why). Answers the bench's control requests (CPU time, memory after GC, CPU
 * profile, heap snapshot, session count, shutdown). Start with `--expose-gc`.
 *
 *   args: <natsUrl> <nodeId> [durable|ephemeral]   (DELIVERY; default durable)
 */
import { startGateway } from '../src/gateway/gateway.ts';
import { createLogger } from '../src/log.ts';
import { processHandlers, serveControl } from './control.ts';
import { benchGatewayOptions } from './gateway-options.ts';

const [natsUrl, nodeId, delivery = 'durable'] = process.argv.slice(2);
if (!natsUrl || !nodeId || (delivery !== 'durable' && delivery !== 'ephemeral')) {
  process.stderr.write('usage: gateway-proc.ts <natsUrl> <nodeId> [durable|ephemeral]\n');
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
  ...benchGatewayOptions,
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
