/**
 * Fault tests with a real auth service process: killed (SIGKILL), hung (SIGSTOP), slowed, and
 * restarted, while clients keep connecting. Bounds are generous for a loaded CI machine; the
 * measured figures come from bench/breaker.ts, not from here.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitFor } from 'xstate';
import { connect } from '@nats-io/transport-node';
import { createLocalJWKSet } from 'jose';
import { startStack, type Stack } from '../harness/stack.ts';
import { ChatgateProcess, pauseProcess, runChatgate, stopAll } from '../harness/process.ts';
import type { TestClient } from '../harness/client.ts';
import { AUTH_QUEUE, subjects } from '../../src/subjects.ts';
import { createTokenVerifier } from '../../src/auth/tokens.ts';

const AUTH_REQUEST_TIMEOUT_MS = 1000;
/** How long past the auth request timeout a connecting client may wait, on a busy CI machine. */
const MARGIN_MS = 2000;

let stack: Stack | undefined;
const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
  await stack?.stop();
  stack = undefined;
});

async function startAuthProcess(s: Stack): Promise<ChatgateProcess> {
  const p = new ChatgateProcess(['auth', '--nats', s.nats[0]!.url], { CHATGATE_HOME: s.home });
  // A stopped process must be continued before it can be stopped for good.
  cleanups.push(() => void p.child.kill('SIGCONT'));
  await p.waitFor(/auth service ready/);
  return p;
}

interface Attempt {
  startedAt: number;
  waitedMs: number;
  degraded?: boolean;
  closeCode?: number;
}

/** Clients connecting one after another, each recorded, until stopped. */
function connectContinuously(s: Stack, user: string) {
  const attempts: Attempt[] = [];
  let stopped = false;
  const loop = (async () => {
    const token = await s.token(user);
    while (!stopped) {
      const startedAt = Date.now();
      const client = s.client(0, { token });
      try {
        const welcome = await client.type('welcome', 10_000);
        attempts.push({ startedAt, waitedMs: Date.now() - startedAt, degraded: welcome.degraded as boolean });
      } catch {
        attempts.push({ startedAt, waitedMs: Date.now() - startedAt, closeCode: client.closeCode });
      }
      client.close();
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  return {
    attempts,
    /** Waits (bounded) for an attempt started after `since` that matches. */
    async until(match: (a: Attempt) => boolean, since: number, timeoutMs: number): Promise<Attempt> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = attempts.find((a) => a.startedAt >= since && match(a));
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching attempt in ${timeoutMs} ms: ${JSON.stringify(attempts.slice(-5))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

async function chatStillWorks(from: TestClient, to: TestClient, toUser: string, body: string) {
  expect(await from.request({ type: 'send', id: body, to: { user: toUser }, body })).toMatchObject({ type: 'ack' });
  expect(await to.next((f) => f.type === 'message' && f.body === body)).toBeDefined();
}

/** In the "slowed" test: the breaker's slow-call bound, under the request timeout ... */
const SLOW_CALL_MS = 300;
/** ... and how long the slowed auth service takes: slower than the bound, within the timeout. */
const SLOWED_ANSWER_MS = 600;

async function outageAndRecovery(fault: 'kill' | 'hang' | 'slow') {
  stack = await startStack({
    auth: false,
    gateway: {
      authRequestTimeoutMs: AUTH_REQUEST_TIMEOUT_MS,
      ...(fault === 'slow' ? { breaker: { slowCallMs: SLOW_CALL_MS } } : {}),
    },
  });
  let auth = await startAuthProcess(stack);
  const { client: alice } = await stack.session(0, 'r-alice');
  const { client: bob } = await stack.session(0, 'r-bob');
  const connecting = connectContinuously(stack, 'r-newcomer');
  cleanups.push(() => connecting.stop());
  await connecting.until((a) => a.degraded === false, 0, 10_000);

  let slow: Awaited<ReturnType<typeof connect>> | undefined;
  const outageAt = Date.now();
  // Slowed: the real service is gone and the only responder answers, correctly, but slowly.
  if (fault === 'kill' || fault === 'slow') auth.child.kill('SIGKILL');
  else await pauseProcess(auth.child);
  if (fault === 'slow') {
    // A real responder in the auth queue group: each answer comes after the slow-call bound but
    // before the request timeout, so every call succeeds and the breaker counts it as slow.
    slow = await connect({ servers: stack.nats[0]!.url });
    cleanups.push(() => slow!.close());
    const verify = createTokenVerifier(createLocalJWKSet(stack.keys.jwks));
    slow.subscribe(subjects.authVerify, {
      queue: AUTH_QUEUE,
      callback: (_err, msg) => {
        const { token } = msg.json<{ token: string }>();
        setTimeout(() => void verify(token).then((v) => msg.respond(JSON.stringify(v))), SLOWED_ANSWER_MS);
      },
    });
    await slow.flush();
  }

  await connecting.until((a) => a.degraded === true, outageAt, 10_000);
  const breaker = stack.gateways[0]!.auth.breaker;
  await waitFor(breaker, (b) => b.matches('open'), { timeout: 10_000 });
  if (fault === 'slow') {
    // It opened on answers that came, slowly: the slow-success branch, not request timeouts.
    const { counts } = breaker.getSnapshot().context;
    expect(counts.slowCalls).toBeGreaterThan(0);
  }
  await chatStillWorks(alice, bob, 'r-bob', `during ${fault}`);

  // The service comes back.
  if (slow) await slow.close();
  if (fault === 'kill' || fault === 'slow') auth = await startAuthProcess(stack);
  else auth.child.kill('SIGCONT');
  const backAt = Date.now();
  const healthy = await connecting.until((a) => a.degraded === false, backAt, 12_000);
  expect(healthy.startedAt - backAt).toBeLessThanOrEqual(10_000);
  await chatStillWorks(bob, alice, 'r-alice', `after ${fault}`);
  await connecting.stop();

  const during = connecting.attempts.filter((a) => a.startedAt >= outageAt);
  expect(during.filter((a) => a.closeCode !== undefined)).toEqual([]);
  expect(Math.max(...during.map((a) => a.waitedMs))).toBeLessThanOrEqual(AUTH_REQUEST_TIMEOUT_MS + MARGIN_MS);
  expect(alice.closeCode).toBeUndefined();
  expect(bob.closeCode).toBeUndefined();
}

describe('resilience - auth outages', () => {
  it('resilience - auth service killed: new sessions degraded within bounds, existing ones untouched, recovery within 10 s', async () => {
    await outageAndRecovery('kill');
  });

  it('resilience - auth service hung (SIGSTOP): the breaker opens and recovers when it continues', async () => {
    await outageAndRecovery('hang');
  });

  it('resilience - auth service slower than the slow-call bound: its answers count as failures, the breaker opens, recovered when fast again', async () => {
    await outageAndRecovery('slow');
  });

  it('resilience - with the reject policy, or with no cached keys, a new session closes with 1013', async () => {
    stack = await startStack({ auth: false, gateway: { degradedPolicy: 'reject', authRequestTimeoutMs: AUTH_REQUEST_TIMEOUT_MS } });
    const auth = await startAuthProcess(stack);
    await stack.session(0, 'r-before');
    auth.child.kill('SIGKILL');
    const client = stack.client(0, { token: await stack.token('r-after') });
    expect(await client.closedWith()).toBe(1013);
  });
});

describe('resilience - revocation', () => {
  it('resilience - tokens revoked during an outage lose their sessions; the others stop being degraded after recovery', async () => {
    stack = await startStack({ auth: false, gateway: { authRequestTimeoutMs: AUTH_REQUEST_TIMEOUT_MS } });
    const auth = await startAuthProcess(stack);
    await stack.session(0, 'warm-up');
    auth.child.kill('SIGKILL');

    const degraded = async (jti: string) => {
      const s = await stack!.session(0, `user-${jti}`, { jti });
      expect(s.welcome.degraded).toBe(true);
      return s;
    };
    const viaCli = await degraded('j-cli');
    const viaFile = await degraded('j-file');
    const fine = await degraded('j-fine');

    // Revoked with the command while no auth service answers: it stores the revocation in the
    // bucket itself, and gateways, which watch the bucket, act at once.
    for (const deadline = Date.now() + 10_000; stack.gateways[0]!.authStatus().revocationsWatch !== 'watching'; ) {
      if (Date.now() > deadline) throw new Error('the gateway never watched the revocations bucket');
      await new Promise((r) => setTimeout(r, 25));
    }
    const revoke = await runChatgate(['revoke', '--nats', stack.nats[0]!.url, '--jti', 'j-cli'], { CHATGATE_HOME: stack.home });
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(await viaCli.client.closedWith(1000)).toBe(4001);

    // Revoked in the file of older versions while no auth service ran: the auth service imports
    // it into the bucket when it starts, and the gateway closes the session.
    await appendFile(join(stack.home, 'revocations.jsonl'), `${JSON.stringify({ jti: 'j-file', at: Math.floor(Date.now() / 1000) })}\n`);
    await startAuthProcess(stack);
    expect(await viaFile.client.closedWith(15_000)).toBe(4001);
    const session = stack.gateways[0]!.sessions.get(fine.welcome.session as string)!;
    await waitFor(session.actor, (s) => !s.context.degraded, { timeout: 15_000 });
    expect(fine.client.closeCode).toBeUndefined();

    // And the restarted auth service refuses the revoked token from now on.
    const again = stack.client(0, { token: await stack.token('user-j-cli', { jti: 'j-cli' }) });
    expect(await again.closedWith()).toBe(4001);
  });

  it('resilience - revoke --sub closes every session of that user on every node within a second', async () => {
    stack = await startStack({ nodes: 2, cluster: true });
    const target = [(await stack.session(0, 'r-target')).client, (await stack.session(1, 'r-target')).client];
    const bystander = (await stack.session(1, 'r-bystander')).client;
    const revoke = await runChatgate(['revoke', '--nats', stack.nats[2]!.url, '--sub', 'r-target'], { CHATGATE_HOME: stack.home });
    expect(revoke.code).toBe(0);
    expect(JSON.parse(revoke.stdout)).toMatchObject({ sub: 'r-target' });
    for (const c of target) expect(await c.closedWith(1000)).toBe(4001);
    bystander.send({ type: 'ping', id: 'ok' });
    expect(await bystander.type('pong')).toBeDefined();
  });
});
