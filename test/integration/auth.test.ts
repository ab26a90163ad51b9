import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, generateKeyPair } from 'jose';
import { startStack, type Stack } from '../harness/stack.ts';
import { TestClient } from '../harness/client.ts';
import { startGateway } from '../../src/gateway/gateway.ts';

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

  it('auth - a sub of 256 UTF-16 code units with dots, wildcards and unicode is welcomed; 257 is not', async () => {
    // The emoji is two code units: 256 units are 255 code points, 257 units are 256 code points.
    const sub = `a.*.>. 😀 ${'é'.repeat(246)}`;
    expect(sub.length).toBe(256);
    const { welcome } = await stack.session(0, sub);
    expect(welcome.user).toBe(sub);
    const over = `${sub}é`;
    expect([...over]).toHaveLength(256);
    expect(await closeCodeFor(await stack.token(over))).toBe(4001);
  });

  it('auth - a good token of 8192 characters is welcomed; one over 8192 closes with 4001', async () => {
    // A valid token padded with a claim to just under and just over the limit.
    const padded = async (sub: string, over: boolean) => {
      for (let pad = 5900; ; pad += 1) {
        // iat is required, and exp - iat at most MAX_TOKEN_LIFETIME_S (issue 9).
        const now = nowS();
        const token = await new SignJWT({ sub, iat: now, exp: now + 600, pad: 'p'.repeat(pad) })
          .setProtectedHeader({ alg: 'ES256', kid: stack.keys.kid })
          .setIssuer('chatgate')
          .setAudience('chatgate')
          .sign(stack.keys.privateKey);
        if (over ? token.length > 8192 : token.length >= 8189) return token;
      }
    };
    const fits = await padded('just-fits', false);
    expect(fits.length).toBeLessThanOrEqual(8192);
    const fitting = stack.client(0, { token: fits, via: 'frame' });
    expect(await fitting.type('welcome')).toMatchObject({ user: 'just-fits' });
    const tooLong = await padded('too-long', true);
    expect(tooLong.length).toBeLessThan(8200);
    expect(await closeCodeFor(tooLong, 'frame')).toBe(4001);
  });

  it('auth - a token that expires in ten years does not overflow the expiry timer', async () => {
    // A node of its own that pings every 50 ms, to count the session's steps over a few pings
    // with nothing sent: an expiry timer past what a Node timer holds (~24.8 days) fires at once,
    // and the session would re-arm it without end (and in a busy loop) instead of waiting.
    const gateway = await startGateway({
      natsUrl: stack.nats[0]!.url,
      port: 0,
      host: '127.0.0.1',
      nodeId: 'long-lived-node',
      heartbeatIntervalMs: 50,
    });
    const client = new TestClient(gateway.url, { token: await stack.token('long-lived', { ttl: 10 * 365 * 24 * 3600 }) });
    try {
      const welcome = await client.type('welcome');
      const session = gateway.sessions.get(welcome.session as string)!;
      let steps = 0;
      const counting = session.actor.subscribe(() => void (steps += 1));
      await new Promise<void>((resolve, reject) => {
        let pings = 0;
        client.ws.on('ping', () => void (++pings === 3 && resolve()));
        client.ws.once('close', (code) => reject(new Error(`closed with ${code} before the node's third ping`)));
      });
      counting.unsubscribe();
      expect(steps, 'session steps while idle').toBe(0);
      client.send({ type: 'ping', id: 'still-here' });
      expect(await client.type('pong')).toEqual({ type: 'pong', id: 'still-here' });
      expect(client.closeCode).toBeUndefined();
    } finally {
      client.close();
      await gateway.close();
    }
  });
});
