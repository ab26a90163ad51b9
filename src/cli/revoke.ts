/**
 * `chatgate revoke --jti ID | --sub USER`: stores the revocation in the revocations bucket itself
 * (src/auth/revocation-store.ts), with the same compare-and-set rules as the auth service, and exits 0
 * only once JetStream has acknowledged it. Every auth service and gateway watches the bucket:
 * gateways then close each affected session with 4001, also those that were cut off from NATS
 * at the time, once they are back.
 *
 * It needs no auth service to answer, only NATS with JetStream and the bucket (which an auth
 * service makes when it first starts); it prints what the bucket holds for that token or user.
 */
import type { CommandConfig } from '../config.ts';
import { natsCredentials, OptionError } from '../config.ts';
import { connectNats } from '../bus/connection.ts';
import { openRevocationBucket, storeRevocation } from '../auth/revocation-store.ts';
import { revocationSchema } from '../auth/revocations.ts';

export async function runRevoke(config: CommandConfig<'revoke'>): Promise<void> {
  if ((config.jti === undefined) === (config.sub === undefined)) {
    throw new OptionError('give exactly one of --jti (REVOKE_JTI) and --sub (REVOKE_SUB)');
  }
  // The auth role's credential: only the auth role may ask for or broadcast a revocation.
  const nc = await connectNats(config.nats, 'chatgate-revoke', {
    role: 'auth',
    home: config.home,
    credentials: natsCredentials(config),
  });
  try {
    const at = Math.floor(Date.now() / 1000);
    const revocation = revocationSchema.parse(config.jti !== undefined ? { jti: config.jti, at } : { sub: config.sub, at });
    const stored = await storeRevocation(await openRevocationBucket(nc), revocation);
    process.stdout.write(`${JSON.stringify(stored)}\n`);
  } finally {
    await nc.close();
  }
}
