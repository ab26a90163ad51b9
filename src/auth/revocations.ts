/**
 * Revoked tokens: by `jti` (that one token) or by `sub` (every token of that user issued at or
 * before the revocation). They live in the JetStream key-value bucket `chatgate-revocations`
 * (src/auth/revocation-store.ts); every auth service and gateway keeps the ones it has read in a
 * `RevocationList` (src/auth/revocation-watch.ts), and forgets each once no token it covers can still
 * be accepted (see docs/resilience.md, "Revocations").
 *
 * CHATGATE_HOME/revocations.jsonl is where revocations lived before; the auth service imports it
 * into the bucket once (`loadRevocations`, then the file is renamed).
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { encodeId, isValidId } from '../subjects.ts';

/**
 * A `jti` the bucket can hold: 1–256 characters of well-formed Unicode (the key is its UTF-8
 * bytes, base64url-encoded). Verification refuses a token with any other `jti`: it could not be
 * revoked by it.
 */
export const jtiSchema = z.string().min(1).max(256).refine((s) => s.isWellFormed(), 'jti must be well-formed Unicode');

export const revocationSchema = z
  .object({
    jti: jtiSchema.optional(),
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

/** The bucket key of a revocation: `jti.<base64url>` or `sub.<base64url>`. */
export function revocationKey(r: Revocation): string {
  return r.jti !== undefined ? `jti.${encodeId(r.jti)}` : `sub.${encodeId(r.sub!)}`;
}

/** True when `stored` already says everything `wanted` says: same token, or same user and no older. */
export function covers(stored: Revocation, wanted: Revocation): boolean {
  if (wanted.jti !== undefined) return stored.jti === wanted.jti;
  return stored.sub === wanted.sub && stored.at >= wanted.at;
}

export class RevocationList {
  /** jti → when this node may forget it (ms since the epoch). */
  readonly #jtis = new Map<string, number>();
  /** The latest revocation time per user, and when this node may forget it. */
  readonly #subs = new Map<string, { at: number; until: number }>();

  get size(): number {
    return this.#jtis.size + this.#subs.size;
  }

  /**
   * Adds a revocation, kept until `untilMs` (for ever by default); false when it adds nothing
   * new. A later copy of a known revocation only extends how long it is kept.
   */
  add(r: Revocation, untilMs = Number.POSITIVE_INFINITY): boolean {
    if (r.jti !== undefined) {
      const known = this.#jtis.get(r.jti);
      this.#jtis.set(r.jti, Math.max(known ?? 0, untilMs));
      return known === undefined;
    }
    const previous = this.#subs.get(r.sub!);
    if (previous !== undefined && previous.at >= r.at) {
      if (previous.at === r.at) previous.until = Math.max(previous.until, untilMs);
      return false;
    }
    this.#subs.set(r.sub!, { at: r.at, until: untilMs });
    return true;
  }

  /** Forgets a revocation (the operator deleted its key from the bucket). */
  remove(r: Pick<Revocation, 'jti' | 'sub'>): void {
    if (r.jti !== undefined) this.#jtis.delete(r.jti);
    if (r.sub !== undefined) this.#subs.delete(r.sub);
  }

  /** Forgets every revocation kept until `nowMs` or earlier. */
  prune(nowMs: number): void {
    for (const [jti, until] of this.#jtis) if (until <= nowMs) this.#jtis.delete(jti);
    for (const [sub, entry] of this.#subs) if (entry.until <= nowMs) this.#subs.delete(sub);
  }

  isRevoked(claims: RevocableClaims): boolean {
    if (claims.jti !== undefined && this.#jtis.has(claims.jti)) return true;
    if (claims.sub === undefined) return false;
    const at = this.#subs.get(claims.sub)?.at;
    // A token without iat cannot show it was issued after the revocation.
    return at !== undefined && (claims.iat ?? 0) <= at;
  }
}

/** Where revocations lived before the bucket (read once, for the import). */
export const LEGACY_FILE = 'revocations.jsonl';

/** Reads the revocations of the old file; lines that do not parse are skipped and counted. */
export async function loadRevocations(home: string): Promise<{ revocations: Revocation[]; skipped: number }> {
  let text = '';
  try {
    text = await readFile(join(home, LEGACY_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const revocations: Revocation[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      revocations.push(revocationSchema.parse(JSON.parse(line)));
    } catch {
      skipped += 1;
    }
  }
  return { revocations, skipped };
}

/** Renames the old file once every line of it is in the bucket, so it is imported only once. */
export async function retireLegacyFile(home: string): Promise<void> {
  await rename(join(home, LEGACY_FILE), join(home, `${LEGACY_FILE}.imported`));
}
