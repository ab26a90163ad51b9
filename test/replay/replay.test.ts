/**
 * Recording on real gateways (real nats-server, real auth service, real WebSocket clients) and
 * deterministic replay of what was recorded through the machines, under a simulated clock.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectionMachine } from '../../machines/connection.machine.ts';
import { circuitBreakerMachine } from '../../machines/circuit-breaker.machine.ts';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/gateway/gateway.ts';
import { closeNats, connectNats } from '../../src/bus/connection.ts';
import type { Observation } from '../../src/observe/observe.ts';
import { captureRecordings, parseRecordings, type Recording } from '../../src/observe/recording.ts';
import { formatState, recordedMachines, replay } from '../../src/observe/replay.ts';
import { runChatgate, stopAll } from '../harness/process.ts';
import { startStack, type Stack } from '../harness/stack.ts';
import { playSession, scenarioGateway, type PlayedSession } from './scenario.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/session.recording.jsonl', import.meta.url));

let stack: Stack;
let dir: string;
/** The recording file of node-0, which recorded every actor. */
let fileText: string;
let played: PlayedSession;

/** A gateway of its own on the stack's NATS (closed by `stack.stop()`). */
async function extraGateway(nodeId: string, options: Partial<GatewayOptions>): Promise<Gateway> {
  const gateway = await startGateway({
    natsUrl: stack.nats[0]!.url,
    port: 0,
    host: '127.0.0.1',
    nodeId,
    handshakesPerIpPerSecond: 1_000_000,
    ...options,
  });
  stack.gateways.push(gateway);
  return gateway;
}

const connectionOf = (text: string, session: string): Recording => {
  const found = parseRecordings(text).recordings.find((r) => r.header.session === session);
  if (!found) throw new Error(`no recording of session ${session}`);
  return found;
};

const statesOf = (observations: readonly Observation[]) =>
  observations.filter((o) => o.kind === 'state').map((o) => formatState(o.state));

/** A copy of `recording` whose observations `edit` changed. */
const tampered = (recording: Recording, edit: (observations: Observation[]) => void): Recording => {
  const copy = structuredClone(recording);
  edit(copy.observations);
  return copy;
};

const indexOf = (recording: Recording, match: (o: Observation) => boolean) => {
  const index = recording.observations.findIndex(match);
  if (index < 0) throw new Error('not in the recording');
  return index;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chatgate-replay-'));
  const path = join(dir, 'node-0.recording.jsonl');
  stack = await startStack({ gateway: { ...scenarioGateway, recording: { to: 'file', path } } });
  played = await playSession(stack, 0, 'rec-alice');
  // Closing the node stops its breaker and flushes the file.
  await stack.gateways[0]!.close();
  fileText = await readFile(path, 'utf8');
});

afterAll(async () => {
  await stopAll();
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('replay - recordings from a real gateway', () => {
  it('replay - a session recorded on a real gateway replays to the same state sequence', () => {
    const recording = connectionOf(fileText, played.session);
    const result = replay(connectionMachine, recording);
    expect(result.divergence).toBeUndefined();
    expect(result.matches).toBe(true);
    expect(result.states.map(formatState)).toEqual(statesOf(recording.observations));
    const states = new Set(result.states.map(formatState));
    for (const state of [
      'open.awaitingAuth',
      'open.authenticating.checkingToken',
      'open.authenticating.subscribing',
      'open.active(token.valid, refresh.idle)',
      'open.active(token.expiring, refresh.idle)',
      'open.active(token.expiring, refresh.verifying)',
      'closed',
    ]) {
      expect(states).toContain(state);
    }
    expect(result.effects.map((e) => e.type)).toEqual(
      expect.arrayContaining(['sendWelcome', 'subscribeRoomAndAck', 'publishAndAck', 'sendExpiring', 'sendRefreshAck', 'sendPong', 'sendError']),
    );
    expect(recording.header).toMatchObject({
      machine: 'connection',
      node: 'node-0',
      session: played.session,
      redacted: true,
      delays: { authTimeout: 5000 },
      input: { limits: { expiryWarningMs: scenarioGateway.limits!.expiryWarningMs } },
    });
    // The token came in an `auth` frame, not with the upgrade.
    expect(recording.header.input).not.toHaveProperty('token');
  });

  it('replay - every actor of the node file replays, the breaker and its stop included', () => {
    const { recordings, orphans } = parseRecordings(fileText);
    expect(orphans).toBe(0);
    expect(recordings.map((r) => r.header.machine).sort()).toEqual(['breaker', 'connection']);
    for (const recording of recordings) {
      const result = replay(recordedMachines[recording.header.machine], recording);
      expect(result.divergence, recording.header.machine).toBeUndefined();
    }
  });

  it('replay - a changed event is reported at the first effect that differs', () => {
    const recording = connectionOf(fileText, played.session);
    const join = indexOf(recording, (o) => o.event?.type === 'frame.join');
    const result = replay(
      connectionMachine,
      tampered(recording, (obs) => {
        obs[join]!.event = { ...obs[join]!.event!, room: 'vault' };
      }),
    );
    expect(result.matches).toBe(false);
    expect(result.divergence).toMatchObject({
      index: join + 1,
      t: recording.observations[join + 1]!.t,
      reason: 'a different effect',
      expected: { kind: 'action', action: { type: 'subscribeRoomAndAck', params: { room: 'lobby', id: 'j1' } } },
      actual: { kind: 'action', action: { type: 'sendError', params: { id: 'j1', code: 'forbidden' } } },
    });
  });

  it('replay - a removed event is reported where its effect was recorded', () => {
    const recording = connectionOf(fileText, played.session);
    const ping = indexOf(recording, (o) => o.event?.type === 'frame.ping');
    const result = replay(connectionMachine, tampered(recording, (obs) => void obs.splice(ping, 1)));
    expect(result.divergence).toMatchObject({
      index: ping,
      expected: { kind: 'action', action: { type: 'sendPong' } },
      actual: undefined,
    });
    expect(result.divergence!.reason).toMatch(/waiting for an event/);
  });

  it('replay - a state the machine does not reach is reported at its index', () => {
    const recording = connectionOf(fileText, played.session);
    const renewed = indexOf(recording, (o) => o.action?.type === 'sendRefreshAck');
    const state = indexOf(recording, (o) => o.kind === 'state' && recording.observations.indexOf(o) > renewed);
    const result = replay(
      connectionMachine,
      tampered(recording, (obs) => {
        obs[state]!.state = { open: { active: { token: 'expiring', refresh: 'idle' } } };
      }),
    );
    expect(result.divergence).toMatchObject({
      index: state,
      reason: 'a different state',
      actual: { kind: 'state', state: { open: { active: { token: 'valid', refresh: 'idle' } } } },
    });
  });

  it('replay - a machine given other limits than recorded diverges where it arms its timer', () => {
    const recording = connectionOf(fileText, played.session);
    // A warning 1 s before expiry instead of 58.8 s: the expiry timer is armed for much later.
    const limits = { ...(recording.header.input.limits as object), expiryWarningMs: 1000 };
    const result = replay(connectionMachine, { ...recording, header: { ...recording.header, input: { ...recording.header.input, limits } } });
    const armed = indexOf(recording, (o) => o.action?.type === 'xstate.raise' && JSON.stringify(o.action.params).includes('untilExpiring'));
    expect(result.divergence).toMatchObject({
      index: armed,
      reason: 'the same effect with different parameters',
      expected: { action: { type: 'xstate.raise' } },
      actual: { action: { type: 'xstate.raise' } },
    });
  });

  it('replay - a timer that fired late on a busy event loop replays at the time it fired', async () => {
    const [recording] = parseRecordings(await readFile(FIXTURE, 'utf8')).recordings;
    const late = 400;
    // As if the event loop had been busy for 400 ms when `expiring` was due: the timer fired late,
    // everything after it came 400 ms later, and each expiry timer armed since then was armed for
    // 400 ms less (they count down to the token's fixed `exp`).
    const shifted = tampered(recording!, (obs) => {
      const fired = obs.findIndex((o) => o.event?.type.startsWith('xstate.after.untilExpiring') ?? false);
      for (const o of obs.slice(fired)) {
        o.t += late;
        const params = o.action?.type === 'xstate.raise' ? (o.action.params as { id?: string; delay?: number }) : undefined;
        if (params?.delay !== undefined && params.id?.includes('.untilExpir')) params.delay -= late;
      }
    });
    const result = replay(connectionMachine, shifted);
    expect(result.divergence).toBeUndefined();
    const expiring = result.steps.find((s) => s.event?.type.startsWith('xstate.after.untilExpiring'));
    expect(expiring!.t).toBeGreaterThan(late);
  });

  it('replay - the recorded session still reaches the same states', async () => {
    const text = await readFile(FIXTURE, 'utf8');
    const [recording] = parseRecordings(text).recordings;
    const result = replay(connectionMachine, text);
    expect(result.divergence).toBeUndefined();
    expect(result.states.map(formatState)).toEqual(statesOf(recording!.observations));
    expect(formatState(result.states.at(-1))).toBe('closed');
    // The fixture is small and holds no secret.
    expect(text.length).toBeLessThan(32 * 1024);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
  });

  it('recording - a default recording holds no token and no message body', () => {
    for (const secret of played.secrets) expect(fileText).not.toContain(secret);
    expect(fileText).toContain('"token":"[redacted]"');
    expect(fileText).toContain('"body":"[redacted]"');
    expect(fileText).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
  });

  it('replay - chatgate replay exits 0 when it matches, 1 when it diverges, 2 for a bad file', async () => {
    const good = await runChatgate(['replay', FIXTURE]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('MATCHES');
    expect(good.stdout).toContain('state  closed');

    const recording = connectionOf(fileText, played.session);
    const ping = indexOf(recording, (o) => o.event?.type === 'frame.ping');
    const lines = fileText.split('\n').filter((line) => line && !(line.includes(played.session) && line.includes('"frame.ping"')));
    const tamperedFile = join(dir, 'tampered.jsonl');
    await writeFile(tamperedFile, `${lines.join('\n')}\n`);
    const bad = await runChatgate(['replay', tamperedFile, '--session', played.session]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`DIVERGES at #${ping}`);

    const notRecording = join(dir, 'not-a-recording.jsonl');
    await writeFile(notRecording, '{"kind":"header"}\nnot json\n');
    const broken = await runChatgate(['replay', notRecording]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/line 1: not a recording header/);
  });
});

describe('replay - the breaker', () => {
  let recording: Recording;

  beforeAll(async () => {
    const path = join(dir, 'breaker.recording.jsonl');
    // No connection is recorded: the session filter matches none.
    const gateway = await extraGateway('node-breaker', {
      breaker: { openBaseMs: 200, openMaxMs: 400, probeIntervalMs: 100 },
      recording: { to: 'file', path, session: 'no-such-session' },
    });
    const closed = new Promise<void>((resolve) => gateway.auth.breaker.on('breaker.closed', () => resolve()));
    // Tripped by hand (as an operator would), it opens, half-opens and probes the real auth service.
    gateway.auth.breaker.send({ type: 'breaker.trip' });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('the breaker did not close within 10 s')), 10_000);
      }),
    ]).finally(() => clearTimeout(timer));
    await gateway.close();
    const { recordings } = parseRecordings(await readFile(path, 'utf8'));
    expect(recordings.map((r) => r.header.machine)).toEqual(['breaker']);
    recording = recordings[0]!;
  });

  it('replay - a breaker tripped, jittered open, probed and closed again replays', () => {
    const result = replay(circuitBreakerMachine, recording);
    expect(result.divergence).toBeUndefined();
    expect(result.states.map(formatState)).toEqual(expect.arrayContaining(['open', 'halfOpen.probing', 'closed']));
    const emitted = result.effects.filter((e) => e.type === 'xstate.emit');
    expect(emitted.map((e) => (e.params as { event: { type: string } }).event.type)).toEqual([
      'breaker.opened',
      'breaker.halfOpened',
      'breaker.closed',
    ]);
  });

  it('replay - timers fire at offsets that do not add up exactly in floating point', () => {
    // For about one `start + delay` in twenty, `SimulatedClock`'s own test `now - start >= delay`
    // fails at `now = start + delay`: whatever the offsets, the timers must fire where recorded.
    for (let k = 1; k <= 60; k++) {
      const shift = k * 0.0137;
      const shifted = tampered(recording, (obs) => {
        for (const o of obs) o.t += shift;
      });
      expect(replay(circuitBreakerMachine, shifted).divergence, `shift ${shift}`).toBeUndefined();
    }
  });
});

describe('recording - to NATS', () => {
  let capture: NatsConnection;
  const lines: string[] = [];
  let wake: () => void = () => {};
  let stopCapture: () => void = () => {};

  /** Waits until a captured line matches; fails after `timeoutMs`. */
  const captured = async (match: (o: Observation) => boolean, timeoutMs = 5000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (lines.some((line) => match(JSON.parse(line) as Observation))) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such line captured; ${lines.length} lines`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };

  beforeAll(async () => {
    capture = await connectNats(stack.nats[0]!.url, 'recording-capture');
    stopCapture = captureRecordings(
      capture,
      (line) => {
        lines.push(line);
        wake();
      },
      'node-nats',
    );
    // The subscription is on the server before the node records anything.
    await capture.flush();
    await extraGateway('node-nats', { ...scenarioGateway, recording: { to: 'nats', user: 'nats-alice' } });
  });

  afterAll(async () => {
    stopCapture();
    if (capture) await closeNats(capture);
  });

  it('recording - a node recording to NATS is captured from another connection, one user only', async () => {
    const node = stack.gateways.findIndex((g) => g.nodeId === 'node-nats');
    // Bob first: once Alice's last line is in, anything the node published for Bob would be too.
    const bob = await playSession(stack, node, 'nats-bob');
    const alice = await playSession(stack, node, 'nats-alice');
    await captured((o) => o.session === alice.session && o.kind === 'state' && o.state === 'closed');

    const text = lines.join('\n');
    expect(text).not.toContain(bob.session);
    for (const secret of alice.secrets) expect(text).not.toContain(secret);
    const { recordings } = parseRecordings(text);
    expect(recordings.map((r) => `${r.header.machine}:${r.header.session ?? ''}`)).toEqual(['breaker:', `connection:${alice.session}`]);
    const result = replay(connectionMachine, recordings[1]!);
    expect(result.divergence).toBeUndefined();
    expect(formatState(result.states.at(-1))).toBe('closed');
    // The breaker's recording so far (it is still running) replays too.
    expect(replay(circuitBreakerMachine, recordings[0]!).divergence).toBeUndefined();
  });
});
