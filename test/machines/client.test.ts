/**
 * The client machine under a simulated clock: every effect is recorded instead of run, and the
 * test plays the socket and the token function by sending the events they would.
 */
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import { clientMachine } from '../../machines/client.machine.ts';

function start(options: { urls?: string[]; random?: () => number; now?: () => number; minDelayMs?: number; maxDelayMs?: number } = {}) {
  const clock = new SimulatedClock();
  const effects: Array<{ type: string; params: Record<string, unknown> }> = [];
  const names = ['fetchToken', 'openSocket', 'sendAuth', 'sendRefresh', 'closeSocket', 'announceOpen', 'announceReconnect', 'announceClosed'] as const;
  const actions = Object.fromEntries(
    names.map((type) => [type, (_: unknown, params: Record<string, unknown>) => effects.push({ type, params })]),
  );
  const actor = createActor(clientMachine.provide({ actions }), {
    clock,
    input: {
      urls: options.urls ?? ['ws://a/ws', 'ws://b/ws'],
      now: options.now ?? (() => 1_000_000 + clock.now()),
      random: options.random ?? (() => 0.5),
      options: { minDelayMs: options.minDelayMs ?? 500, maxDelayMs: options.maxDelayMs ?? 4000 },
    },
  }).start();
  const of = (type: string) => effects.filter((e) => e.type === type);
  const open = (session = 's1') => {
    actor.send({ type: 'socket.opened' });
    actor.send({ type: 'frame.welcome', session, node: 'n', exp: 2_000_000 });
  };
  return { actor, clock, effects, of, open };
}

describe('client machine', () => {
  it('client machine - fetches a token, opens the first URL, authenticates, and is open after welcome', () => {
    const { actor, of, open } = start();
    expect(of('fetchToken')).toEqual([{ type: 'fetchToken', params: { reason: 'connect' } }]);
    actor.send({ type: 'token.ok', token: 't1' });
    expect(of('openSocket')[0]!.params).toEqual({ url: 'ws://a/ws', attempt: 0 });
    open();
    expect(of('sendAuth')[0]!.params).toEqual({ token: 't1' });
    expect(actor.getSnapshot().matches('open')).toBe(true);
    expect(of('announceOpen')[0]!.params).toEqual({ session: 's1', node: 'n' });
  });

  it('client machine - backs off with full jitter, doubling the cap per failed attempt up to the maximum, rotating URLs', () => {
    const { actor, clock, of } = start({ random: () => 0.999 });
    actor.send({ type: 'token.ok', token: 't' });
    const delays: number[] = [];
    const urls: string[] = [];
    for (let i = 0; i < 6; i++) {
      actor.send({ type: 'socket.closed', code: 1006, reason: '' });
      const announced = of('announceReconnect').at(-1)!.params;
      delays.push(announced.delayMs as number);
      // Nothing happens one millisecond before the wait is over; the next attempt comes at its end.
      const opens = of('openSocket').length;
      clock.increment((announced.delayMs as number) - 1);
      expect(of('openSocket')).toHaveLength(opens);
      clock.increment(1);
      expect(of('openSocket')).toHaveLength(opens + 1);
      urls.push(of('openSocket').at(-1)!.params.url as string);
    }
    // 0.999 × min(4000, 500 × 2^n)
    expect(delays).toEqual([499, 999, 1998, 3996, 3996, 3996]);
    expect(urls).toEqual(['ws://b/ws', 'ws://a/ws', 'ws://b/ws', 'ws://a/ws', 'ws://b/ws', 'ws://a/ws']);
  });

  it('client machine - the draw is the jitter: a random of 0 reconnects at once, and a welcome resets the attempts', () => {
    let draw = 0;
    const { actor, clock, of, open } = start({ random: () => draw });
    actor.send({ type: 'token.ok', token: 't' });
    actor.send({ type: 'socket.closed', code: 1013, reason: 'node full' });
    expect(of('announceReconnect')[0]!.params).toMatchObject({ delayMs: 0, attempt: 1, code: 1013 });
    clock.increment(0);
    open();
    draw = 0.5;
    actor.send({ type: 'socket.closed', code: 1001, reason: 'node going away' });
    // attempt 0 again after the welcome: the cap is minDelayMs.
    expect(of('announceReconnect')[1]!.params).toMatchObject({ delayMs: 250, attempt: 1, code: 1001 });
  });

  it.each([1001, 1006, 1011, 1013, 4008, 4009])('client machine - close %i reconnects with the same token', (code) => {
    const { actor, clock, of, open } = start();
    actor.send({ type: 'token.ok', token: 't' });
    open();
    actor.send({ type: 'socket.closed', code, reason: '' });
    expect(actor.getSnapshot().matches('reconnecting')).toBe(true);
    clock.increment(4000);
    expect(of('fetchToken')).toHaveLength(1);
    expect(of('openSocket')).toHaveLength(2);
  });

  it.each([1002, 1003, 1007, 1008, 1009])('client machine - close %i stops for good, without a retry', (code) => {
    const { actor, clock, of, open } = start();
    actor.send({ type: 'token.ok', token: 't' });
    open();
    actor.send({ type: 'socket.closed', code, reason: 'r' });
    expect(actor.getSnapshot().status).toBe('done');
    expect(of('announceClosed')[0]!.params).toEqual({ failure: { code, reason: 'r' } });
    clock.increment(60_000);
    expect(of('openSocket')).toHaveLength(1);
  });

  it('client machine - 4002 reconnects with a fresh token', () => {
    const { actor, clock, of, open } = start();
    actor.send({ type: 'token.ok', token: 't' });
    open();
    actor.send({ type: 'socket.closed', code: 4002, reason: 'token expired' });
    clock.increment(4000);
    expect(of('fetchToken')).toHaveLength(2);
    actor.send({ type: 'token.ok', token: 't2' });
    actor.send({ type: 'socket.opened' });
    expect(of('sendAuth').at(-1)!.params).toEqual({ token: 't2' });
  });

  it('client machine - 4001 retries once with a fresh token, a second 4001 before any welcome stops', () => {
    const { actor, clock, of } = start();
    actor.send({ type: 'token.ok', token: 't' });
    actor.send({ type: 'socket.opened' });
    actor.send({ type: 'socket.closed', code: 4001, reason: 'invalid token' });
    expect(actor.getSnapshot().matches('reconnecting')).toBe(true);
    clock.increment(4000);
    expect(of('fetchToken')).toHaveLength(2);
    actor.send({ type: 'token.ok', token: 't2' });
    actor.send({ type: 'socket.opened' });
    actor.send({ type: 'socket.closed', code: 4001, reason: 'invalid token' });
    expect(actor.getSnapshot().status).toBe('done');
    expect(of('announceClosed')[0]!.params).toEqual({ failure: { code: 4001, reason: 'invalid token' } });
  });

  it('client machine - a connect that takes longer than connectTimeoutMs is abandoned and retried', () => {
    const { actor, clock, of } = start();
    actor.send({ type: 'token.ok', token: 't' });
    clock.increment(9_999);
    expect(of('closeSocket')).toHaveLength(0);
    clock.increment(1);
    expect(of('closeSocket')).toHaveLength(1);
    expect(actor.getSnapshot().matches('reconnecting')).toBe(true);
  });

  it('client machine - a failed token function counts as a failed attempt', () => {
    const { actor, of } = start();
    actor.send({ type: 'token.failed', reason: 'offline' });
    expect(actor.getSnapshot().matches('reconnecting')).toBe(true);
    expect(of('announceReconnect')[0]!.params).toMatchObject({ attempt: 1, reason: 'token: offline' });
  });

  it('client machine - expiring fetches a token and sends it as refresh, staying open', () => {
    const { actor, of, open } = start();
    actor.send({ type: 'token.ok', token: 't' });
    open();
    actor.send({ type: 'frame.expiring', exp: 2_000_030 });
    expect(of('fetchToken').at(-1)!.params).toEqual({ reason: 'refresh' });
    actor.send({ type: 'token.ok', token: 't2' });
    expect(of('sendRefresh')[0]!.params).toEqual({ token: 't2' });
    expect(actor.getSnapshot().matches({ open: 'idle' })).toBe(true);
  });

  it('client machine - a token past its exp is replaced before the next connect', () => {
    let now = 1_000_000;
    const { actor, clock, of } = start({ now: () => now });
    actor.send({ type: 'token.ok', token: 't' });
    actor.send({ type: 'socket.opened' });
    actor.send({ type: 'frame.welcome', session: 's', node: 'n', exp: 1_000 });
    now = 1_000_001;
    actor.send({ type: 'socket.closed', code: 1006, reason: '' });
    clock.increment(4000);
    expect(of('fetchToken')).toHaveLength(2);
  });

  it('client machine - close stops from any state and closes the socket', () => {
    const { actor, of, open } = start();
    actor.send({ type: 'token.ok', token: 't' });
    open();
    actor.send({ type: 'client.close' });
    expect(of('closeSocket').at(-1)!.params).toEqual({ code: 1000, reason: 'client closed' });
    expect(of('announceClosed')[0]!.params).toEqual({ failure: undefined });
  });
});
