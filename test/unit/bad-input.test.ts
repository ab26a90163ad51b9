/**
 * The pieces that keep bad input from stopping a node, one by one: the body depth limit and the
 * strict chat message decoder (src/gateway/codec.ts), request targets (src/request-target.ts), bounded
 * copies and observers that never throw (src/observe/observe.ts), NATS callbacks that never throw
 * (src/bus/callback-guard.ts), log budgets (src/bounded-log.ts), and the last resort
 * (src/last-resort.ts) in a real child process. The processes themselves are in
 * test/integration/bad-input.test.ts and test/integration/fuzz.property.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Msg } from '@nats-io/nats-core';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { decodeChatMessage, decodeClientFrame, encodeChatMessage, encodeSignal, MAX_BODY_DEPTH, nestsDeeperThan } from '../../src/gateway/codec.ts';
import { parseRequestTarget } from '../../src/request-target.ts';
import { MAX_COPY_DEPTH, Observers, redact, TOO_DEEP, type Observation } from '../../src/observe/observe.ts';
import { LogBudget } from '../../src/bounded-log.ts';
import { CallbackGuard } from '../../src/bus/callback-guard.ts';

const nestedArrays = (depth: number): unknown => {
  let value: unknown = 0;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
};

/** A pino logger that keeps its lines. */
function capturingLogger() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: pino({ level: 'info' }, destination), lines };
}

describe('codec - body depth', () => {
  it('codec - nesting is measured without recursion, whatever the depth', () => {
    expect(nestsDeeperThan(nestedArrays(1_000_000), MAX_BODY_DEPTH)).toBe(true);
    expect(nestsDeeperThan(nestedArrays(MAX_BODY_DEPTH), MAX_BODY_DEPTH)).toBe(false);
    expect(nestsDeeperThan(nestedArrays(MAX_BODY_DEPTH + 1), MAX_BODY_DEPTH)).toBe(true);
    expect(nestsDeeperThan('text', 0)).toBe(false);
    expect(nestsDeeperThan({ a: [{ b: 1 }] }, 3)).toBe(false);
    expect(nestsDeeperThan({ a: [{ b: 1 }] }, 2)).toBe(true);
  });

  it('codec - a send whose body nests deeper than 32 levels is a bad frame that keeps its id', () => {
    const frame = (depth: number) =>
      `{"type":"send","id":"d","to":{"user":"u"},"body":${'['.repeat(depth)}0${']'.repeat(depth)}}`;
    expect(decodeClientFrame(frame(10_000))).toEqual({
      type: 'frame.invalid',
      id: 'd',
      reason: `body: nests deeper than ${MAX_BODY_DEPTH} levels`,
    });
    expect(decodeClientFrame(frame(MAX_BODY_DEPTH))).toMatchObject({ type: 'frame.send', id: 'd' });
  });
});

describe('codec - chat messages from NATS', () => {
  const good = encodeChatMessage('abcDEF123', { msgId: 'm', from: 'f', to: { room: 'r' }, body: { x: [1] }, ts: 1700000000000 });

  it('codec - what encodeChatMessage writes is decoded as it was', () => {
    expect(decodeChatMessage(Buffer.from(good))).toMatchObject({ origin: 'abcDEF123', ts: 1700000000000 });
    expect(decodeChatMessage(Buffer.from(good.replace('abcDEF123', '')))).toMatchObject({ origin: '' });
  });

  it.each([
    ['no header', '{}'],
    ['a ts that is not digits', 'a b\n{}'],
    ['an exponent', ' 1e999\n{"type":"message","msgId":"m","from":"f","to":{},"ts":1,"body":1}'],
    ['a negative ts', ' -1\n{"type":"message","msgId":"m","from":"f","to":{},"ts":1,"body":1}'],
    ['an origin with a space-free oddity', 'a.b 1\n{"type":"message","msgId":"m","from":"f","to":{},"ts":1,"body":1}'],
    ['a frame that is not JSON', ' 1\n{"type":"message",}'],
    ['a frame of another type', ' 1\n{"type":"welcome","msgId":"m","from":"f","to":{},"ts":1,"body":1}'],
    ['a frame without body', ' 1\n{"type":"message","msgId":"m","from":"f","to":{},"ts":1}'],
    ['an empty payload', ''],
  ])('codec - %s is dropped', (_name, payload) => {
    expect(decodeChatMessage(Buffer.from(payload))).toBeUndefined();
  });

  it('codec - a frame that is not UTF-8 is dropped', () => {
    const bytes = Buffer.concat([Buffer.from(' 1\n{"type":"message","msgId":"'), Buffer.from([0xff]), Buffer.from('","from":"f","to":{},"ts":1,"body":1}')]);
    expect(decodeChatMessage(bytes)).toBeUndefined();
  });
});

describe('request target', () => {
  it.each([
    ['/', '/'],
    ['/ws?x=1', '/ws'],
    ['//', '//'],
    ['//:99999', '//:99999'],
    ['//[', '//['],
    ['http://host/healthz', '/healthz'],
  ])('request target - %s is the path %s', (target, path) => {
    expect(parseRequestTarget(target)?.pathname).toBe(path);
  });

  it.each([[undefined], [''], ['*'], ['ws'], ['http://['], ['ws://host/ws'], ['javascript:alert(1)']])(
    'request target - %s is none (HTTP 400)',
    (target) => {
      expect(parseRequestTarget(target)).toBeUndefined();
    },
  );
});

describe('observe - bounded copies', () => {
  it('observe - redact copies any depth without running out of stack, cutting below its bound', () => {
    const copy = redact({ type: 'x', params: nestedArrays(100_000) }) as { params: unknown };
    let node: unknown = copy.params;
    let depth = 1;
    while (Array.isArray(node)) {
      node = node[0];
      depth += 1;
    }
    expect(node).toBe(TOO_DEEP);
    expect(depth).toBe(MAX_COPY_DEPTH);
  });

  it('observe - a listener that throws never reaches the actor, and the others still hear', () => {
    const { log, lines } = capturingLogger();
    const observers = new Observers({ log });
    const heard: Observation[] = [];
    observers.listen({ filter: {}, receive: () => { throw new RangeError('Maximum call stack size exceeded'); } });
    observers.listen({ filter: {}, receive: (o) => heard.push(o) });
    const inspect = observers.inspector({ machine: 'connection', node: 'n', session: 's' }, () => {
      throw new Error('user lookup failed');
    });
    const actorRef = { sessionId: 'r' };
    expect(() =>
      inspect({ type: '@xstate.event', actorRef, rootId: 'r', event: { type: 'frame.ping' } } as never),
    ).not.toThrow();
    expect(() => observers.emit({ machine: 'connection', node: 'n', t: 0, kind: 'event', event: { type: 'x' } })).not.toThrow();
    expect(heard).toHaveLength(1);
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['observation failed', 'observation failed']);
  });
});

describe('nats callback', () => {
  it('nats callback - errors, throws and rejections are bounded lines, and the next message is handled', async () => {
    const { log, lines } = capturingLogger();
    const guard = new CallbackGuard(log, { lines: 3 });
    const handled: string[] = [];
    const callback = guard.callback('test', (msg) => {
      const text = msg.string();
      if (text === 'throw') throw Object.assign(new Error('bad'), { token: 'never-logged' });
      if (text === 'reject') return Promise.reject(new Error('later'));
      handled.push(text);
      return undefined;
    });
    const msg = (text: string) => ({ string: () => text }) as unknown as Msg;
    for (const text of ['throw', 'reject', 'ok', 'throw', 'throw', 'throw']) callback(null, msg(text));
    callback(new Error('permissions violation'), undefined as unknown as Msg);
    callback(null, msg('still ok'));
    await Promise.resolve();
    expect(handled).toEqual(['ok', 'still ok']);
    expect(lines).toHaveLength(3);
    expect(lines.join('\n')).not.toContain('never-logged');
  });
});

describe('bounded log', () => {
  it('bounded log - a budget lets so many lines through per window and counts the rest', () => {
    let now = 0;
    const budget = new LogBudget({ lines: 2, windowMs: 1000, now: () => now });
    expect([budget.take(), budget.take(), budget.take(), budget.take()]).toEqual([0, 0, undefined, undefined]);
    now = 1000;
    expect(budget.take()).toBe(2);
  });
});

describe('last resort', () => {
  it('last resort - a storm of uncaught errors is a few bounded lines, without fields, and the process serves on', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../fixtures/last-resort-child.ts', import.meta.url))], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(timer);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('still serving {"uncaught_exception":50,"unhandled_rejection":50}');
    const lines = stdout.split('\n').filter((l) => l.includes('uncaught error, serving on'));
    expect(lines).toHaveLength(10);
    expect(stdout).not.toContain('secret-token-in-a-field');
  });
});

describe('codec - signals on the bus', () => {
  it('codec - what encodeSignal writes is decoded as a signal', () => {
    const data = Buffer.from(encodeSignal('abc', { from: 'a', to: { room: 'r' }, body: { typing: true } }, 1700000000000));
    expect(decodeChatMessage(data)).toMatchObject({ origin: 'abc', type: 'signal' });
  });
  it('codec - a signal frame with any other shape is dropped', () => {
    const head = 'abc 1700000000000\n';
    for (const frame of [
      { type: 'signal', from: 'a', to: { room: 'r' }, body: 1, extra: 1 },
      { type: 'signal', from: 'a', to: { room: 'r', user: 'u' }, body: 1 },
      { type: 'signal', from: 'a', to: { group: 'r' }, body: 1 },
      { type: 'signal', from: 1, to: { room: 'r' }, body: 1 },
      { type: 'signal', from: 'a', to: { room: 'r' } },
      { type: 'joined', room: 'r', user: 'u' },
    ]) {
      expect(decodeChatMessage(Buffer.from(head + JSON.stringify(frame))), JSON.stringify(frame)).toBeUndefined();
    }
  });
  it('codec - a client signal body over 1024 bytes as JSON is bad_request; 1024 passes', () => {
    const at = (n: number) => decodeClientFrame(JSON.stringify({ type: 'signal', to: { user: 'u' }, body: 'x'.repeat(n - 2) }));
    expect(at(1024)).toMatchObject({ type: 'frame.signal' });
    expect(at(1025)).toMatchObject({ type: 'frame.invalid', reason: 'body: larger than 1024 bytes' });
  });
});
