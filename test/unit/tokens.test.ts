/**
 * Minting and checking tokens (src/auth/tokens.ts) against docs/protocol.md's "What a token must be",
 * with real keys and jose, no network.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { loadSigningKeys, type SigningKeys } from '../../src/auth/keys.ts';
import { ACCEPTED_ALGORITHMS, createTokenVerifier, MAX_TOKEN_LENGTH, mintToken, type TokenVerifier } from '../../src/auth/tokens.ts';

let home: string;
let keys: SigningKeys;
let verify: TokenVerifier;
const NOW = Math.floor(Date.now() / 1000);

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'chatgate-tokens-'));
  keys = await loadSigningKeys(home);
  verify = createTokenVerifier(createLocalJWKSet(keys.jwks));
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

/** A token with these claims (and `iat: NOW` unless given, `iat: undefined` for none), signed with the dev key. */
const signed = (claims: Record<string, unknown>, iss = 'chatgate', aud: string | string[] = 'chatgate') =>
  new SignJWT({ iat: NOW, ...claims }).setProtectedHeader({ alg: 'ES256', kid: keys.kid }).setIssuer(iss).setAudience(aud).sign(keys.privateKey);

describe('tokens - minting', () => {
  it('tokens - a minted token carries the claims asked for, and the defaults', async () => {
    const token = await mintToken(keys, { sub: 'alice', rooms: ['a'], ttl: 60, nbf: 5, jti: 'j', now: NOW });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', kid: keys.kid, typ: 'JWT' });
    expect(decodeJwt(token)).toEqual({ sub: 'alice', rooms: ['a'], iss: 'chatgate', aud: 'chatgate', iat: NOW, exp: NOW + 60, nbf: NOW + 5, jti: 'j' });
    const plain = decodeJwt(await mintToken(keys, { sub: 'bob', now: NOW }));
    expect(plain).toEqual({ sub: 'bob', iss: 'chatgate', aud: 'chatgate', iat: NOW, exp: NOW + 3600 });
    expect(decodeJwt(await mintToken(keys, { sub: 'c', iss: 'me', aud: 'app', now: NOW }))).toMatchObject({ iss: 'me', aud: 'app' });
  });

  it('tokens - without now, the clock is used', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { iat } = decodeJwt(await mintToken(keys, { sub: 'c' }));
    expect(iat).toBeGreaterThanOrEqual(before);
    expect(iat).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });
});

describe('tokens - checking', () => {
  it('tokens - a good token gives its claims, not degraded', async () => {
    const token = await mintToken(keys, { sub: 'alice', rooms: ['a', 'b'], jti: 'j1', now: NOW });
    expect(await verify(token)).toEqual({
      outcome: 'ok',
      claims: { sub: 'alice', exp: NOW + 3600, rooms: ['a', 'b'], jti: 'j1', iat: NOW },
      degraded: false,
    });
  });

  it('tokens - rooms: absent is none, "*" is every room, anything else is invalid', async () => {
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60 }))).toMatchObject({ outcome: 'ok', claims: { rooms: [] } });
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60, rooms: '*' }))).toMatchObject({ claims: { rooms: '*' } });
    for (const rooms of [5, 'lobby', ['ok', ''], ['ok', 7], { a: 1 }, ['r'.repeat(257)]]) {
      expect(await verify(await signed({ sub: 'a', exp: NOW + 60, rooms })), JSON.stringify(rooms)).toEqual({
        outcome: 'invalid',
        reason: 'claim rooms rejected',
      });
    }
  });

  it('tokens - sub is required and 1–256 UTF-16 code units of well-formed Unicode', async () => {
    expect(await verify(await signed({ exp: NOW + 60 }))).toMatchObject({ outcome: 'invalid' });
    expect(await verify(await signed({ sub: 'x'.repeat(256), exp: NOW + 60 }))).toMatchObject({ outcome: 'ok' });
    expect(await verify(await signed({ sub: 'x'.repeat(257), exp: NOW + 60 }))).toEqual({ outcome: 'invalid', reason: 'claim sub rejected' });
    expect(await verify(await signed({ sub: 'a\uD800', exp: NOW + 60 }))).toEqual({ outcome: 'invalid', reason: 'claim sub rejected' });
  });

  it('tokens - exp is required; a past exp is expired', async () => {
    expect(await verify(await signed({ sub: 'a' }))).toMatchObject({ outcome: 'invalid', reason: 'claim exp rejected' });
    expect(await verify(await signed({ sub: 'a', exp: NOW - 60 }))).toEqual({ outcome: 'expired', reason: 'token expired' });
  });

  it('tokens - iat is required, and a lifetime exp - iat over the maximum (one day by default) is invalid', async () => {
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60, iat: undefined }))).toEqual({ outcome: 'invalid', reason: 'claim iat rejected' });
    expect(await verify(await signed({ sub: 'a', iat: NOW - 10, exp: NOW - 10 + 86_400 }))).toMatchObject({ outcome: 'ok' });
    const tooLong = { outcome: 'invalid', reason: 'token lifetime over MAX_TOKEN_LIFETIME_S' };
    expect(await verify(await signed({ sub: 'a', iat: NOW - 10, exp: NOW - 10 + 86_401 }))).toEqual(tooLong);
    const short = createTokenVerifier(createLocalJWKSet(keys.jwks), { issuer: 'chatgate', audience: 'chatgate', maxLifetimeS: 60 });
    expect(await short(await signed({ sub: 'a', exp: NOW + 60 }))).toMatchObject({ outcome: 'ok' });
    expect(await short(await signed({ sub: 'a', exp: NOW + 61 }))).toEqual(tooLong);
  });

  it('tokens - the clock tolerance lets exp and nbf be that many seconds off, and no more', async () => {
    const tolerant = createTokenVerifier(createLocalJWKSet(keys.jwks), undefined, undefined, 30);
    expect(await tolerant(await signed({ sub: 'a', iat: NOW - 60, exp: NOW - 20 }))).toMatchObject({ outcome: 'ok' });
    expect(await tolerant(await signed({ sub: 'a', iat: NOW - 60, exp: NOW - 40 }))).toEqual({ outcome: 'expired', reason: 'token expired' });
    expect(await tolerant(await signed({ sub: 'a', exp: NOW + 60, nbf: NOW + 20 }))).toMatchObject({ outcome: 'ok' });
    expect(await tolerant(await signed({ sub: 'a', exp: NOW + 60, nbf: NOW + 40 }))).toEqual({ outcome: 'invalid', reason: 'claim nbf rejected' });
    expect(await verify(await signed({ sub: 'a', iat: NOW - 60, exp: NOW - 20 }))).toEqual({ outcome: 'expired', reason: 'token expired' });
  });

  it('tokens - iss must be the issuer and aud contain the audience; a future nbf is invalid', async () => {
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60 }, 'other'))).toEqual({ outcome: 'invalid', reason: 'claim iss rejected' });
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60 }, 'chatgate', 'other'))).toEqual({ outcome: 'invalid', reason: 'claim aud rejected' });
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60 }, 'chatgate', ['other', 'chatgate']))).toMatchObject({ outcome: 'ok' });
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60, nbf: NOW + 120 }))).toEqual({ outcome: 'invalid', reason: 'claim nbf rejected' });
    const custom = createTokenVerifier(createLocalJWKSet(keys.jwks), { issuer: 'me', audience: 'app' });
    expect(await custom(await signed({ sub: 'a', exp: NOW + 60 }, 'me', 'app'))).toMatchObject({ outcome: 'ok' });
    expect(await custom(await signed({ sub: 'a', exp: NOW + 60 }))).toMatchObject({ outcome: 'invalid' });
  });

  it('tokens - a jti that is not a string is invalid', async () => {
    expect(await verify(await signed({ sub: 'a', exp: NOW + 60, jti: 5 }))).toEqual({ outcome: 'invalid', reason: 'claim jti rejected' });
  });

  it('tokens - a revoked token is invalid, and the revocation check sees jti, sub and iat', async () => {
    const seen: unknown[] = [];
    const revoking = createTokenVerifier(createLocalJWKSet(keys.jwks), undefined, (c) => {
      seen.push(c);
      return c.jti === 'bad';
    });
    expect(await revoking(await mintToken(keys, { sub: 'a', jti: 'bad', now: NOW }))).toEqual({ outcome: 'invalid', reason: 'token revoked' });
    expect(await revoking(await mintToken(keys, { sub: 'a', jti: 'good', now: NOW }))).toMatchObject({ outcome: 'ok' });
    expect(seen).toEqual([
      { jti: 'bad', sub: 'a', iat: NOW },
      { jti: 'good', sub: 'a', iat: NOW },
    ]);
  });

  it('tokens - empty, not a string, or over 8192 characters is invalid before any parsing', async () => {
    expect(MAX_TOKEN_LENGTH).toBe(8192);
    const reason = 'token missing or too long';
    expect(await verify('')).toEqual({ outcome: 'invalid', reason });
    expect(await verify(5 as unknown as string)).toEqual({ outcome: 'invalid', reason });
    // A good token padded past the limit with a claim: 8192 passes the length check, 8193 not.
    const padded = async (length: number) => {
      let pad = 0;
      for (;;) {
        const token = await signed({ sub: 'a', exp: NOW + 60, pad: 'p'.repeat(pad) });
        if (token.length >= length) return token;
        pad += Math.max(1, Math.floor(((length - token.length) * 3) / 4));
      }
    };
    const long = await padded(8150);
    expect(long.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH);
    expect(await verify(long)).toMatchObject({ outcome: 'ok' });
    expect(await verify(`${long}${'x'.repeat(MAX_TOKEN_LENGTH + 1 - long.length)}`)).toEqual({ outcome: 'invalid', reason });
    expect(await verify(`${long}${'x'.repeat(MAX_TOKEN_LENGTH - long.length)}`)).not.toEqual({ outcome: 'invalid', reason });
  });

  it('tokens - only the accepted asymmetric algorithms; alg none, HMAC and other keys are refused', async () => {
    expect(ACCEPTED_ALGORITHMS).toEqual(['ES256', 'ES384', 'ES512', 'EdDSA', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ sub: 'a', exp: NOW + 60, iss: 'chatgate', aud: 'chatgate' })).toString('base64url');
    expect(await verify(`${header}.${body}.`)).toMatchObject({ outcome: 'invalid' });
    const hmac = await new SignJWT({ sub: 'a', exp: NOW + 60 })
      .setProtectedHeader({ alg: 'HS256', kid: keys.kid })
      .setIssuer('chatgate')
      .setAudience('chatgate')
      .sign(new TextEncoder().encode(JSON.stringify(keys.jwks.keys[0])));
    expect(await verify(hmac)).toMatchObject({ outcome: 'invalid' });
    const { privateKey } = await generateKeyPair('ES256');
    const foreign = await new SignJWT({ sub: 'a', exp: NOW + 60 })
      .setProtectedHeader({ alg: 'ES256', kid: keys.kid })
      .setIssuer('chatgate')
      .setAudience('chatgate')
      .sign(privateKey);
    expect(await verify(foreign)).toMatchObject({ outcome: 'invalid', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    expect(await verify('not-a-jwt')).toMatchObject({ outcome: 'invalid' });
  });

  it('tokens - a failure that is not jose\'s is an unreadable token', async () => {
    const broken = createTokenVerifier(async () => {
      throw new TypeError('boom');
    });
    expect(await broken(await mintToken(keys, { sub: 'a', now: NOW }))).toEqual({ outcome: 'invalid', reason: 'unreadable token' });
  });
});
