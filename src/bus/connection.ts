/**
 * Connecting to NATS and letting go of it, the same way for every chatgate process.
 *
 * Which credential a process presents is decided here and only here (`natsAuthentication`):
 * the explicit settings (NATS_CREDS, NATS_NKEY_SEED_FILE, NATS_USER/NATS_PASSWORD, NATS_TOKEN)
 * when one is given, else the seed of the process's role in CHATGATE_HOME (bus-credentials.ts)
 * when that home has one, else none (an open server, as in the tests). The role also sets the
 * inbox prefix (`_INBOX_<role>`), which the permissions of bus-permissions.ts expect.
 */
import { readFile } from 'node:fs/promises';
import {
  credsAuthenticator,
  errors,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { inboxPrefix, type BusRole } from './permissions.ts';
import { credentialFile, readRoleSeed, readSeedFile } from './credentials.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';

/** Credentials for a NATS deployment chatgate did not set up; each field from one NATS_* setting. */
export interface NatsCredentials {
  /** A `.creds` file (user JWT and nkey seed; NATS_CREDS), for operator-mode deployments. */
  credsFile?: string;
  /** A file holding a user nkey seed (NATS_NKEY_SEED_FILE). */
  nkeySeedFile?: string;
  /** NATS_USER; needs `password`. */
  user?: string;
  /** NATS_PASSWORD. */
  password?: string;
  /** NATS_TOKEN. */
  token?: string;
  /** TLS: the CA that signed the server's certificate (NATS_TLS_CA). */
  tlsCa?: string;
  /** TLS client certificate and its key, for servers that verify clients (NATS_TLS_CERT, NATS_TLS_KEY). */
  tlsCert?: string;
  tlsKey?: string;
}

/** Who this process is on the bus. */
export interface NatsAccess {
  /** Its role: picks the inbox prefix, and the credential in `home` when none is given. */
  role?: BusRole;
  /** CHATGATE_HOME, where `chatgate nats` wrote the role credentials. */
  home?: string;
  credentials?: NatsCredentials;
}

/** The connect options that authenticate, and where the credential came from (never the secret). */
export async function natsAuthentication(
  access: NatsAccess,
): Promise<{ options: Partial<ConnectionOptions>; source: string }> {
  const c = access.credentials ?? {};
  const options: Partial<ConnectionOptions> = {};
  if (c.tlsCa !== undefined || c.tlsCert !== undefined || c.tlsKey !== undefined) {
    options.tls = { caFile: c.tlsCa, certFile: c.tlsCert, keyFile: c.tlsKey };
  }
  if (c.credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = await readFile(c.credsFile);
    } catch (err) {
      throw new ChatgateError(ChatgateErrorCode.natsCredentials, `cannot read ${c.credsFile} (NATS_CREDS)`, { cause: err });
    }
    return { options: { ...options, authenticator: credsAuthenticator(creds) }, source: `${c.credsFile} (NATS_CREDS)` };
  }
  if (c.nkeySeedFile !== undefined) {
    const seed = await readSeedFile(c.nkeySeedFile);
    if (seed === undefined) {
      throw new ChatgateError(ChatgateErrorCode.natsCredentials, `${c.nkeySeedFile} (NATS_NKEY_SEED_FILE) does not exist`);
    }
    return { options: { ...options, authenticator: nkeyAuthenticator(seed) }, source: `${c.nkeySeedFile} (NATS_NKEY_SEED_FILE)` };
  }
  if (c.user !== undefined) return { options: { ...options, user: c.user, pass: c.password }, source: 'NATS_USER' };
  if (c.token !== undefined) return { options: { ...options, token: c.token }, source: 'NATS_TOKEN' };
  if (access.role !== undefined && access.home !== undefined) {
    const seed = await readRoleSeed(access.home, access.role);
    if (seed !== undefined) {
      return {
        options: { ...options, authenticator: nkeyAuthenticator(seed) },
        source: `the ${access.role} credential ${credentialFile(access.home, access.role)}`,
      };
    }
  }
  return { options, source: 'no credential' };
}

export async function connectNats(servers: string | string[], name: string, access: NatsAccess = {}): Promise<NatsConnection> {
  const { options, source } = await natsAuthentication(access);
  try {
    // noAsyncTraces: nats.js would otherwise make two Error objects per request for stack traces.
    return await connect({
      servers,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      noAsyncTraces: true,
      ...(access.role === undefined ? {} : { inboxPrefix: inboxPrefix(access.role) }),
      ...options,
    });
  } catch (err) {
    if (err instanceof errors.AuthorizationError) {
      const hint = source === 'no credential' ? ': set CHATGATE_HOME to the one `chatgate nats` wrote, or NATS_CREDS/NATS_USER/NATS_TOKEN' : '';
      throw new ChatgateError(ChatgateErrorCode.natsAuthorization, `NATS refused ${source}${hint}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Drains the connection (pending messages go out, subscriptions end) within `deadlineMs`, then
 * closes it whatever the state: a node cut off from NATS must still be able to stop.
 */
export async function closeNats(nc: NatsConnection, deadlineMs = 2000): Promise<void> {
  if (nc.isClosed()) return;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
  });
  // A drain that fails (the connection is gone) is followed by the close below.
  await Promise.race([nc.drain().catch(() => {}), deadline]);
  clearTimeout(timer);
  if (!nc.isClosed()) await nc.close();
}
