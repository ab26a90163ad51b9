/**
 * The nats-server configuration that locks the bus down: an `authorization` block with one nkey
 * user per role and that role's permissions from bus-permissions.ts. No `no_auth_user`, so a
 * client without a credential is refused. Everything else (ports, cluster, JetStream) stays on
 * the command line (nats-server.ts), which overrides nothing here.
 *
 * Only public keys go into this file. Strings are written as JSON strings, which the nats-server
 * config format reads as they are (a quoted `$JS.API.…` is not a variable).
 */
import { BUS_ROLES, busPermissions, type BusRole, type Grant } from './permissions.ts';

const q = (s: string) => JSON.stringify(s);
const list = (items: string[]) => `[${items.map(q).join(', ')}]`;
const subscription = (g: Grant) => (g.queue === undefined ? g.subject : `${g.subject} ${g.queue}`);

/** The permissions block of one role, in nats-server config syntax. */
export function rolePermissionsConfig(role: BusRole): string {
  const p = busPermissions[role];
  const sub = [`allow: ${list(p.subscribe.map(subscription))}`];
  if (p.denySubscribe?.length) sub.push(`deny: ${list(p.denySubscribe)}`);
  const lines = [`publish: { allow: ${list(p.publish.map((g) => g.subject))} }`, `subscribe: { ${sub.join(', ')} }`];
  if (p.allowResponses) lines.push('allow_responses: true');
  return `{\n      ${lines.join('\n      ')}\n    }`;
}

/**
 * The `authorization` block: one user per role, each identified by its nkey's public key.
 * `publicKeys` comes from `ensureRoleCredentials` (bus-credentials.ts).
 */
export function authorizationConfig(publicKeys: Readonly<Record<BusRole, string>>): string {
  const users = BUS_ROLES.map(
    (role) => `  # role: ${role}\n  { nkey: ${q(publicKeys[role])}, permissions: ${rolePermissionsConfig(role)} }`,
  );
  return `# Written by chatgate (src/bus/server-config.ts): one user per role; anonymous clients are refused.\nauthorization {\n users = [\n${users.join(',\n')}\n ]\n}\n`;
}
