/**
 * The chatgate auth service as a child process of `bench/run.ts`, with the bench's signing keys.
 *
 *   args: <natsUrl> <home>
 */
import { startAuthService } from '../src/auth/service.ts';
import { createLogger } from '../src/log.ts';
import { processHandlers, serveControl } from './control.ts';

const [natsUrl, home] = process.argv.slice(2);
if (!natsUrl || !home) {
  process.stderr.write('usage: auth-proc.ts <natsUrl> <home>\n');
  process.exit(2);
}

const log = createLogger({ level: 'warn', destination: process.stderr });
const service = await startAuthService({ natsUrl, home, log });

serveControl(
  {
    ...processHandlers(),
    shutdown: async () => {
      await service.close();
      setImmediate(() => process.exit(0));
      return true;
    },
  },
  {},
);
