/**
 * The synchronous signature check of src/auth/tokens.ts (`crypto.verify` for common ES256/384/512
 * tokens, jose's claim checks after it) decides every token exactly as jose's `jwtVerify` alone
 * did: same outcome, same reason, same claims. Valid tokens with any claims, tokens under other
 * headers (`crit`, `b64`, unknown `kid`, an algorithm the key is not for, EdDSA and RSA keys), and
 * tampered ones (a character changed, added or removed, padding, a signature of another token or
 * of another size, non-canonical base64url) are each checked by both verifiers.
 */
import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { createLocalJWKSet, exportJWK, type JWK } from 'jose';
import { createTokenVerifier, type TokenVerifier } from '../../src/auth/tokens.ts';

const NOW = Math.floor(Date.now() / 1000);

interface Signer {
  alg: string;
  kid: string;
  key: KeyObject;
  /** crypto.sign's algorithm and options for this key. */
  hash: string | null;
  dsaEncoding?: 'ieee-p1363';
}

const ec = (curve: string, alg: string, hash: string, kid: string): Signer => ({
  alg,
  kid,
  key: generateKeyPairSync('ec', { namedCurve: curve }).privateKey,
  hash,
  dsaEncoding: 'ieee-p1363',
});
const signers: Signer[] = [
  ec('P-256', 'ES256', 'sha256', 'p256'),
  ec('P-256', 'ES256', 'sha256', 'p256-other'),
  ec('P-384', 'ES384', 'sha384', 'p384'),
  ec('P-521', 'ES512', 'sha512', 'p521'),
  { alg: 'EdDSA', kid: 'ed', key: generateKeyPairSync('ed25519').privateKey, hash: null },
  { alg: 'RS256', kid: 'rsa', key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, hash: 'sha256' },
];
/** Not in the key set: its tokens are signed by a key nobody trusts, under a trusted kid. */
const stranger = ec('P-256', 'ES256', 'sha256', 'p256');

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64url');

function signWith(signer: Signer, headerJson: string, payloadJson: string): string {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`;
  const options = signer.dsaEncoding ? { key: signer.key, dsaEncoding: signer.dsaEncoding } : signer.key;
  return `${input}.${b64(sign(signer.hash, Buffer.from(input), options))}`;
}

async function jwks(): Promise<{ keys: JWK[] }> {
  const keys: JWK[] = [];
  for (const s of signers) {
    keys.push({ ...(await exportJWK(createPublicKey(s.key))), kid: s.kid, alg: s.alg, use: 'sig' });
  }
  // A key without kid or alg: chosen by its type when a header names no kid.
  keys.push(await exportJWK(createPublicKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey)));
  return { keys };
}
const header = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      // 'own': the signer's kid.
      kid: fc.oneof({ weight: 5, arbitrary: fc.constant('own') }, { weight: 2, arbitrary: fc.constantFrom(...signers.map((s) => s.kid), 'unknown', undefined) }),
      typ: fc.constantFrom('JWT', 'at+jwt', undefined),
    }),
  },
  { weight: 1, arbitrary: fc.constantFrom<Record<string, unknown>>({ crit: ['b64'], b64: false }, { crit: ['exp'] }, { b64: true }, { jku: 'https://x' }, { kid: 5 }, { typ: 1 }) },
);

const anyClaims = fc.record(
  {
    sub: fc.oneof(fc.constantFrom('alice', 'bob', '', 'a.b', 'x'.repeat(300)), fc.integer()),
    iss: fc.constantFrom('chatgate', 'other', undefined),
    aud: fc.constantFrom<unknown>('chatgate', ['x', 'chatgate'], 'other', undefined),
    iat: fc.constantFrom<unknown>(NOW - 10, NOW - 100_000, NOW + 3600, undefined, 'now'),
    exp: fc.constantFrom<unknown>(NOW + 3600, NOW - 3600, NOW + 200_000, undefined, NOW + 0.5e9),
    nbf: fc.constantFrom<unknown>(undefined, NOW - 10, NOW + 3600),
    jti: fc.constantFrom<unknown>(undefined, 'j1', '', 7),
    rooms: fc.constantFrom<unknown>(undefined, '*', ['a', 'b'], { a: 'r', b: 'rw' }, { a: 'x' }, 3),
  },
  { requiredKeys: [] },
);
/** Claims that pass, but for the odd optional one. */
const goodClaims = fc.record({
  sub: fc.constantFrom('alice', 'bob'),
  iss: fc.constant('chatgate'),
  aud: fc.constant('chatgate'),
  iat: fc.constantFrom(NOW - 10, NOW),
  exp: fc.constantFrom(NOW + 60, NOW + 3600),
  nbf: fc.constantFrom<number | undefined>(undefined, NOW - 10),
  jti: fc.constantFrom<string | undefined>(undefined, 'j2', 'j1'),
  rooms: fc.constantFrom<unknown>(undefined, '*', ['a'], { a: 'r' }),
});
const claims = fc.oneof({ weight: 3, arbitrary: goodClaims }, { weight: 2, arbitrary: anyClaims });

/** What is done to a token after signing. */
const tamper = fc.oneof(
  { weight: 5, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), to: fc.constantFrom('A', 'B', 'Q', '_', '-', 'z', '0', '.', '=', '!') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.constantFrom({ kind: 'pad' as const }, { kind: 'swapSignature' as const }, { kind: 'stranger' as const }, { kind: 'lastBits' as const }) },
);

function tampered(token: string, t: { kind: string; at?: number; to?: string }, other: string): string {
  switch (t.kind) {
    case 'flip': {
      const i = (t.at ?? 0) % token.length;
      return token.slice(0, i) + t.to + token.slice(i + 1);
    }
    case 'cut':
      return token.slice(0, (t.at ?? 0) % token.length);
    case 'pad':
      return `${token}=`;
    case 'swapSignature':
      return `${token.slice(0, token.lastIndexOf('.'))}.${other.slice(other.lastIndexOf('.') + 1)}`;
    case 'lastBits': {
      // The same bytes in non-canonical base64url: the last character's unused bits set.
      const last = token.at(-1)!;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      return token.slice(0, -1) + alphabet[(alphabet.indexOf(last) + 1) % 64];
    }
    default:
      return token;
  }
}

describe('tokens - synchronous verification decides as jose', () => {
  it('tokens - for valid, odd and tampered tokens, the sync verifier and jose alone give the same verdict', async () => {
    const keySet = createLocalJWKSet(await jwks());
    const revoked = (c: { jti?: string }) => c.jti === 'j1';
    const fast: TokenVerifier = createTokenVerifier(keySet, undefined, revoked, 5);
    const reference: TokenVerifier = createTokenVerifier(keySet, undefined, revoked, 5, { sync: false });
    const other = signWith(signers[0]!, JSON.stringify({ alg: 'ES256', kid: 'p256' }), JSON.stringify({ sub: 'z' }));
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: signers.length - 1 }),
        fc.oneof(
          { weight: 4, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.constantFrom('ES256', 'ES384', 'RS256', 'none', 'HS256') },
        ),
        header,
        claims,
        tamper,
        async (signerIndex, algOverride, extraHeader, claimSet, t) => {
          const signer = t.kind === 'stranger' ? stranger : signers[signerIndex]!;
          const head = { alg: algOverride ?? signer.alg, ...Object.fromEntries(Object.entries(extraHeader).filter(([, v]) => v !== undefined)) };
          if (extraHeader.kid === 'own') Object.assign(head, { kid: signer.kid });
          const payload = Object.fromEntries(Object.entries(claimSet).map(([k, v]) => [k, v === 'now' ? NOW : v]).filter(([, v]) => v !== undefined));
          const token = tampered(signWith(signer, JSON.stringify(head), JSON.stringify(payload)), t, other);
          const [a, b] = await Promise.all([fast(token), reference(token)]);
          expect(a).toEqual(b);
          if (b.outcome === 'ok') accepted++;
        },
      ),
      { numRuns: 400 },
    );
    // The property saw accepted tokens, not only refusals.
    expect(accepted).toBeGreaterThan(5);
  });
});

describe('tokens - the synchronous path is taken', () => {
  it('tokens - a common ES256 token is verified without WebCrypto; jose alone uses it', async () => {
    const keySet = createLocalJWKSet(await jwks());
    const token = signWith(
      signers[0]!,
      JSON.stringify({ alg: 'ES256', kid: 'p256', typ: 'JWT' }),
      JSON.stringify({ sub: 'alice', iss: 'chatgate', aud: 'chatgate', iat: NOW, exp: NOW + 60 }),
    );
    const subtle = globalThis.crypto.subtle;
    const spy = vi.spyOn(subtle, 'verify');
    try {
      expect(await createTokenVerifier(keySet)(token)).toMatchObject({ outcome: 'ok', claims: { sub: 'alice' } });
      expect(spy).not.toHaveBeenCalled();
      expect(await createTokenVerifier(keySet, undefined, undefined, 0, { sync: false })(token)).toMatchObject({ outcome: 'ok' });
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });
});
