import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, generateKeyPair } from 'jose';
import { startStack, type Stack } from '../harness/stack.ts';

let stack: Stack;
beforeAll(async () => {
  // Tokens of up to eleven years are accepted here, for the expiry timer test below.
  stack = await startStack({ gateway: { authTimeoutMs: 400 }, maxTokenLifetimeS: 11 * 365 * 24 * 3600 });
});
afterAll(async () => {
  await stack?.stop();
});

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const nowS = () => Math.floor(Date.now() / 1000);

async function closeCodeFor(token: string, via: 'header' | 'protocol' | 'frame' = 'header') {
  const client = stack.client(0, { token, via });
  return client.closedWith();
}

describe('auth - presenting a token', () => {
  it('auth - a token in the Authorization header is welcomed', async () => {
    const { welcome } = await stack.session(0, 'alice');
    expect(welcome).toMatchObject({ type: 'welcome', user: 'alice', node: 'node-0', degraded: false });
    expect(typeof welcome.session).toBe('string');
    expect(welcome.exp).toBeGreaterThan(nowS());
  });

  it('auth - a token in the subprotocols is welcomed, chatgate.v1 is selected and the token is never echoed', async () => {
    const token = await stack.token('bob');
    const client = stack.client(0, { token, via: 'protocol' });
    const headers = new Promise<Record<string, string | string[] | undefined>>((resolve) =>
      client.ws.once('upgrade', (res) => resolve(res.headers)),
    );
    await client.type('welcome');
    expect(client.ws.protocol).toBe('chatgate.v1');
    const raw = JSON.stringify(await headers);
    expect(raw).toContain('chatgate.v1');
    expect(raw).not.toContain(token);
  });

  it('auth - a token in a first auth frame is welcomed', async () => {
    const client = stack.client(0, { token: await stack.token('carol'), via: 'frame' });
    expect(await client.type('welcome')).toMatchObject({ user: 'carol' });
  });

  it('auth - no token within AUTH_TIMEOUT_MS closes with 4008', async () => {
    const client = stack.client(0, { via: 'none' });
    expect(await client.closedWith()).toBe(4008);
  });

  it('auth - frames before authentication get error unauthorized', async () => {
    const client = stack.client(0, { via: 'none' });
    await client.opened;
    const reply = await client.request({ type: 'join', id: 'j1', room: 'r' });
    expect(reply).toMatchObject({ type: 'error', id: 'j1', code: 'unauthorized' });
  });

  it('auth - an invalid token in the header is accepted as a socket and closed with 4001', async () => {
    const client = stack.client(0, { token: 'not-a-jwt', via: 'header' });
    await client.opened;
    expect(await client.closedWith()).toBe(4001);
  });

  it('auth - an expired token in the subprotocols closes with 4002', async () => {
    const client = stack.client(0, { token: await stack.token('dave', { ttl: -60 }), via: 'protocol' });
    await client.opened;
    expect(await client.closedWith()).toBe(4002);
  });

  it('auth - a bad auth frame closes with 4001, an expired one with 4002', async () => {
    expect(await closeCodeFor('garbage', 'frame')).toBe(4001);
    expect(await closeCodeFor(await stack.token('erin', { ttl: -60 }), 'frame')).toBe(4002);
  });
});

describe('auth - token rules', () => {
  it('auth - alg none is rejected', async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'mallory', iss: 'chatgate', aud: 'chatgate', exp: nowS() + 60 })}.`;
    expect(await closeCodeFor(token)).toBe(4001);
  });

  it('auth - HS256 signed with the public key (algorithm confusion) is rejected', async () => {
    const publicJwk = stack.keys.jwks.keys[0]!;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', kid: stack.keys.kid })
      .setSubject('mallory')
      .setIssuer('chatgate')
      .setAudience('chatgate')
      .setExpirationTime(nowS() + 60)
      .sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
    expect(await closeCodeFor(token)).toBe(4001);
  });

  it('auth - a token signed by another key with the same kid is rejected', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: stack.keys.kid })
      .setSubject('mallory')
      .setIssuer('chatgate')
      .setAudience('chatgate')
      .setExpirationTime(nowS() + 60)
      .sign(privateKey);
    expect(await closeCodeFor(token)).toBe(4001);
  });

  it('auth - wrong iss, wrong aud, a future nbf are rejected with 4001', async () => {
    expect(await closeCodeFor(await stack.token('u1', { iss: 'someone-else' }))).toBe(4001);
    expect(await closeCodeFor(await stack.token('u2', { aud: 'other-app' }))).toBe(4001);
    expect(await closeCodeFor(await stack.token('u3', { nbf: 120 }))).toBe(4001);
  });

  it('auth - missing exp, missing sub, a sub over 256 chars and a malformed rooms claim are rejected', async () => {
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: stack.keys.kid })
        .setIssuer('chatgate')
        .setAudience('chatgate')
        .sign(stack.keys.privateKey);
    expect(await closeCodeFor(await sign({ sub: 'noexp' }))).toBe(4001);
    expect(await closeCodeFor(await sign({ exp: nowS() + 60 }))).toBe(4001);
    expect(await closeCodeFor(await sign({ sub: 'x'.repeat(257), exp: nowS() + 60 }))).toBe(4001);
    expect(await closeCodeFor(await sign({ sub: 'rooms', rooms: 5, exp: nowS() + 60 }))).toBe(4001);
  });

  it('auth - a token issued in the future (beyond the clock tolerance) is rejected with 4001', async () => {
    // A year ahead, lifetime a day: it would pass the lifetime check and outlive every revocation.
    const iat = nowS() + 365 * 86_400;
    const future = await new SignJWT({ jti: 'future-1' })
      .setProtectedHeader({ alg: 'ES256', kid: stack.keys.kid })
      .setSubject('future')
      .setIssuer('chatgate')
      .setAudience('chatgate')
      .setIssuedAt(iat)
      .setExpirationTime(iat + 86_000)
      .sign(stack.keys.privateKey);
    expect(await closeCodeFor(future)).toBe(4001);
    // Within the tolerance (a few seconds of skew) it is welcomed.
    const { welcome } = await stack.session(0, 'skewed', { now: nowS() + 2 });
    expect(welcome.user).toBe('skewed');
  });

  it('auth - a jti the revocations bucket cannot hold (over 256 characters, empty) is rejected with 4001', async () => {
    expect(await closeCodeFor(await stack.token('long-jti', { jti: 'j'.repeat(257) }))).toBe(4001);
    expect(await closeCodeFor(await stack.token('empty-jti', { jti: '' }))).toBe(4001);
    const { welcome } = await stack.session(0, 'ok-jti', { jti: 'j'.repeat(256) });
    expect(welcome.user).toBe('ok-jti');
  });

  it('auth - a sub of 256 characters with dots, wildcards and unicode is welcomed', async () => {
    const sub = `a.*.>. 😀 ${'é'.repeat(240)}`.slice(0, 256);
    const { welcome } = await stack.session(0, sub);
    expect(welcome.user).toBe(sub);
  });

  it('auth - a token that expires in ten years does not overflow the expiry timer', async () => {
    const { client } = await stack.session(0, 'long-lived', { ttl: 10 * 365 * 24 * 3600 });
    client.send({ type: 'ping', id: 'still-here' });
    expect(await client.type('pong')).toEqual({ type: 'pong', id: 'still-here' });
    expect(client.closeCode).toBeUndefined();
  });
});
