/**
 * `chatgate revoke --jti ID | --sub USER`: asks an auth service to record the revocation, which
 * it persists and broadcasts; gateways then close every affected session with 4001.
 *
 * When no auth service answers (an outage), the command records it itself in CHATGATE_HOME and
 * broadcasts it, so gateways act at once and auth services sharing that home load it when they
 * start; it says so on stderr.
 */
import type { CommandConfig } from '../config.ts';
import { natsCredentials, OptionError } from '../config.ts';
import { connectNats } from '../bus/connection.ts';
import { persistRevocation, revocationSchema, type Revocation } from '../auth/revocations.ts';
import { subjects } from '../subjects.ts';

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
    const request = config.jti !== undefined ? { jti: config.jti, at } : { sub: config.sub, at };
    let revocation: Revocation | undefined;
    try {
      const reply = (await nc.request(subjects.authRevoke, JSON.stringify(request), { timeout: 3000 })).json<{
        ok: boolean;
        revocation?: Revocation;
        error?: string;
      }>();
      if (!reply.ok) throw new OptionError(`the auth service refused the revocation: ${reply.error ?? 'unknown'}`);
      revocation = reply.revocation;
    } catch (err) {
      if (err instanceof OptionError) throw err;
      revocation = revocationSchema.parse(request);
      await persistRevocation(config.home, revocation);
      nc.publish(subjects.revoked, JSON.stringify(revocation));
      await nc.flush();
      process.stderr.write(
        `chatgate: no auth service answered; revocation broadcast to gateways and written to ${config.home}\n`,
      );
    }
    process.stdout.write(`${JSON.stringify(revocation)}\n`);
  } finally {
    await nc.close();
  }
}
