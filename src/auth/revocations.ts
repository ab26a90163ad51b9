/**
 * Revoked tokens: by `jti` (that one token) or by `sub` (every token of that user issued at or
 * before the revocation). The auth service keeps them in CHATGATE_HOME/revocations.jsonl, one JSON
 * object a line, so they survive a restart; gateways keep the ones they have heard of in memory.
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { isValidId } from '../subjects.ts';

export const revocationSchema = z
  .object({
    jti: z.string().min(1).max(256).optional(),
    sub: z.string().refine(isValidId).optional(),
    /** Seconds since the epoch. */
    at: z.number().int().nonnegative(),
  })
  .refine((r) => (r.jti === undefined) !== (r.sub === undefined), 'exactly one of jti and sub');

export type Revocation = z.infer<typeof revocationSchema>;

/** What a token is judged by: its id, user and issue time. */
export interface RevocableClaims {
  jti?: string;
  sub?: string;
  iat?: number;
}

export class RevocationList {
  readonly #jtis = new Set<string>();
  /** The latest revocation time per user. */
  readonly #subs = new Map<string, number>();

  get size(): number {
    return this.#jtis.size + this.#subs.size;
  }

  /** Adds a revocation; false when it adds nothing new. */
  add(r: Revocation): boolean {
    if (r.jti !== undefined) {
      if (this.#jtis.has(r.jti)) return false;
      this.#jtis.add(r.jti);
      return true;
    }
    const previous = this.#subs.get(r.sub!);
    if (previous !== undefined && previous >= r.at) return false;
    this.#subs.set(r.sub!, r.at);
    return true;
  }

  isRevoked(claims: RevocableClaims): boolean {
    if (claims.jti !== undefined && this.#jtis.has(claims.jti)) return true;
    if (claims.sub === undefined) return false;
    const at = this.#subs.get(claims.sub);
    // A token without iat cannot show it was issued after the revocation.
    return at !== undefined && (claims.iat ?? 0) <= at;
  }
}

const FILE = 'revocations.jsonl';

/** Reads the persisted revocations; lines that do not parse are skipped and counted. */
export async function loadRevocations(home: string, list = new RevocationList()) {
  let text = '';
  try {
    text = await readFile(join(home, FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      list.add(revocationSchema.parse(JSON.parse(line)));
    } catch {
      skipped += 1;
    }
  }
  return { list, skipped };
}

export async function persistRevocation(home: string, r: Revocation): Promise<void> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  await appendFile(join(home, FILE), `${JSON.stringify(r)}\n`, { mode: 0o600 });
}
