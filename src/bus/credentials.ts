/**
 * The role credentials of the bus: one NATS nkey per role (gateway, auth, api), its seed in
 * `CHATGATE_HOME/nats/<role>.nk` (the folder 0700, each file 0600). `chatgate nats` makes the
 * missing ones and writes only their public keys into the server config; `chatgate gateway`,
 * `auth`, `revoke` and `dev` read the seed of their role from the same CHATGATE_HOME.
 *
 * A seed is made the way the signing key is (keys.ts): written to a temporary file and linked
 * into place, so two processes that start together never make two different ones.
 */
import { chmod, link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { BUS_ROLES, type BusRole } from './permissions.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';

/** The folder of the role credentials in CHATGATE_HOME. */
export function credentialsDir(home: string): string {
  return join(home, 'nats');
}

/** The seed file of one role. */
export function credentialFile(home: string, role: BusRole): string {
  return join(credentialsDir(home), `${role}.nk`);
}

function credentialError(message: string, cause?: unknown): ChatgateError {
  return new ChatgateError(ChatgateErrorCode.natsCredentials, message, cause === undefined ? undefined : { cause });
}

/**
 * Reads a seed file. Undefined when it does not exist; an error when it is unreadable, is not a
 * user nkey seed, or can be read by others than its owner (a seed is a password).
 */
export async function readSeedFile(path: string): Promise<Uint8Array | undefined> {
  let text: string;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) {
      throw credentialError(`${path} is readable by others: chmod 600 it`);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof ChatgateError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw credentialError(`cannot read ${path}`, err);
  }
  const seed = new TextEncoder().encode(text.trim());
  try {
    // A user seed starts with SU; fromSeed checks the checksum. The message names no part of it.
    if (!text.trim().startsWith('SU')) throw new Error('not a user seed');
    fromSeed(seed);
  } catch {
    throw credentialError(`${path} holds no NATS user nkey seed`);
  }
  return seed;
}

async function createSecretFile(dir: string, path: string, secret: string): Promise<void> {
  const tmp = join(dir, `.tmp.${randomBytes(6).toString('hex')}`);
  await writeFile(tmp, `${secret}\n`, { mode: 0o600 });
  try {
    await link(tmp, path);
  } catch (err) {
    // Another process made it first: keep theirs.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp);
  }
}

/**
 * Makes the credential of every role that has none yet, and returns each role's public key (what
 * the server config holds). Tightens the folder to 0700.
 */
export async function ensureRoleCredentials(home: string): Promise<Record<BusRole, string>> {
  const dir = credentialsDir(home);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    for (const role of BUS_ROLES) {
      const path = credentialFile(home, role);
      if ((await readSeedFile(path)) === undefined) {
        await createSecretFile(dir, path, new TextDecoder().decode(createUser().getSeed()));
      }
    }
  } catch (err) {
    if (err instanceof ChatgateError) throw err;
    throw credentialError(`cannot write the NATS credentials in ${dir}`, err);
  }
  const keys = {} as Record<BusRole, string>;
  for (const role of BUS_ROLES) {
    keys[role] = fromSeed((await readSeedFile(credentialFile(home, role)))!).getPublicKey();
  }
  return keys;
}

/** The seed of a role from CHATGATE_HOME; undefined when that home has none. */
export function readRoleSeed(home: string, role: BusRole): Promise<Uint8Array | undefined> {
  return readSeedFile(credentialFile(home, role));
}

/** The file of the route password that cluster members share (see `routePassword` in nats-server.ts). */
export function routeSecretFile(home: string): string {
  return join(credentialsDir(home), 'route.secret');
}

/** The route password of a cluster, made on first use (32 random bytes, base64url), 0600. */
export async function ensureRouteSecret(home: string): Promise<string> {
  const dir = credentialsDir(home);
  const path = routeSecretFile(home);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const read = async () => {
      const info = await stat(path);
      if ((info.mode & 0o077) !== 0) throw credentialError(`${path} is readable by others: chmod 600 it`);
      return (await readFile(path, 'utf8')).trim();
    };
    try {
      return await read();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await createSecretFile(dir, path, randomBytes(32).toString('base64url'));
    return await read();
  } catch (err) {
    if (err instanceof ChatgateError) throw err;
    throw credentialError(`cannot read or write ${path}`, err);
  }
}
