/**
 * The signing keys of the auth service and of `chatgate token`, kept in CHATGATE_HOME.
 *
 * Made on first use: an ES256 key pair written as a private JWK with mode 0600. Two processes
 * that start together (auth service and token) never make two different keys: each writes a
 * temporary file and links it into place, and the loser reads the winner's file.
 *
 * Like ssh, a home or key file that other users may read or write is refused, with the chmod
 * that fixes it: the private key signs every user's token.
 */
import { mkdir, readFile, writeFile, link, unlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type SignJWT,
} from 'jose';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';

export const SIGNING_ALG = 'ES256';
const KEY_FILE = 'signing-key.jwk.json';

/** What jose signs with. */
type SigningKey = Parameters<SignJWT['sign']>[0];

export interface SigningKeys {
  kid: string;
  alg: typeof SIGNING_ALG;
  privateKey: SigningKey;
  /** The public half as a JWK Set, safe to publish. */
  jwks: JSONWebKeySet;
}

/**
 * Refuses key material other users may read or write (any group or other permission bit), with
 * the command that fixes it. POSIX modes only: on Windows the file's ACL decides.
 */
export async function checkPrivate(path: string, kind: 'directory' | 'file'): Promise<void> {
  if (process.platform === 'win32') return;
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if ((mode & 0o077) === 0) return;
  const fix = kind === 'directory' ? '700' : '600';
  throw new ChatgateError(
    ChatgateErrorCode.keys,
    `${path} is accessible by other users (mode ${mode.toString(8).padStart(4, '0')}); ` +
      `it holds the signing key: run \`chmod ${fix} ${path}\``,
  );
}

async function readKeyFile(path: string): Promise<JWK | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as JWK;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ChatgateError(ChatgateErrorCode.keys, `cannot read the signing key in ${path}`, {
      cause: err,
    });
  }
}

async function createKeyFile(home: string, path: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const publicPart: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  const privateJwk: JWK = {
    ...jwk,
    alg: SIGNING_ALG,
    use: 'sig',
    kid: await calculateJwkThumbprint(publicPart),
  };
  const tmp = join(home, `.${KEY_FILE}.${randomBytes(6).toString('hex')}`);
  await writeFile(tmp, JSON.stringify(privateJwk), { mode: 0o600 });
  try {
    await link(tmp, path);
    return privateJwk;
  } catch (err) {
    // Another process made the key first: use its key, so every process signs alike.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return (await readKeyFile(path))!;
    throw err;
  } finally {
    await unlink(tmp);
  }
}

/** Loads the signing keys from `home`, making them on first use. */
export async function loadSigningKeys(home: string): Promise<SigningKeys> {
  const path = join(home, KEY_FILE);
  let privateJwk: JWK | undefined;
  try {
    await mkdir(home, { recursive: true, mode: 0o700 });
    await checkPrivate(home, 'directory');
    await checkPrivate(path, 'file');
    privateJwk = (await readKeyFile(path)) ?? (await createKeyFile(home, path));
  } catch (err) {
    if (err instanceof ChatgateError) throw err;
    throw new ChatgateError(ChatgateErrorCode.keys, `cannot create signing keys in ${home}`, {
      cause: err,
    });
  }
  const { d: _private, ...publicJwk } = privateJwk;
  const privateKey = (await importJWK(privateJwk, SIGNING_ALG)) as SigningKey;
  return {
    kid: privateJwk.kid!,
    alg: SIGNING_ALG,
    privateKey,
    jwks: { keys: [{ ...publicJwk, key_ops: undefined, ext: undefined }] },
  };
}
