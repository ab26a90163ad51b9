/**
 * Replay's tolerance for timers and the recording format's refusals (docs/replay.md), on the
 * committed fixture: no gateway needed.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionMachine } from '../../machines/connection.machine.ts';
import type { Observation } from '../../src/observe/observe.ts';
import { parseRecordings, RecordingFormatError, type Recording } from '../../src/observe/recording.ts';
import { replay } from '../../src/observe/replay.ts';
import { runChatgate } from '../harness/process.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/session.recording.jsonl', import.meta.url));
let fixtureText: string;
let fixture: Recording;
let dir: string;

beforeAll(async () => {
  fixtureText = await readFile(FIXTURE, 'utf8');
  fixture = parseRecordings(fixtureText).recordings[0]!;
  dir = await mkdtemp(join(tmpdir(), 'chatgate-replay-formats-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * The fixture as if the `expiring` timer had fired `early` ms before it was due: it and
 * everything after it come earlier, and the expiry timers armed since then are armed for as much
 * longer (they count down to the token's fixed `exp`).
 */
function firedEarly(early: number): Recording {
  const copy = structuredClone(fixture);
  const obs: Observation[] = copy.observations;
  const fired = obs.findIndex((o) => o.event?.type.startsWith('xstate.after.untilExpiring') ?? false);
  expect(fired).toBeGreaterThan(0);
  for (const o of obs.slice(fired)) {
    o.t -= early;
    const params = o.action?.type === 'xstate.raise' ? (o.action.params as { id?: string; delay?: number }) : undefined;
    if (params?.delay !== undefined && params.id?.includes('.untilExpir')) params.delay += early;
  }
  return copy;
}

const toFile = async (name: string, recording: Recording) => {
  const path = join(dir, name);
  const lines = [recording.header, ...recording.observations].map((o) => JSON.stringify(o));
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
};

describe('replay - timer tolerance', () => {
  it('replay - a timer that fires up to 100 ms (the default tolerance) before its time still matches', () => {
    expect(replay(connectionMachine, fixture).divergence).toBeUndefined();
    expect(replay(connectionMachine, firedEarly(60)).divergence).toBeUndefined();
  });

  it('replay - a timer that fires more than the tolerance before its time diverges, unless the tolerance is raised', () => {
    const early = firedEarly(160);
    expect(replay(connectionMachine, early).divergence).toBeDefined();
    expect(replay(connectionMachine, early, { toleranceMs: 200 }).divergence).toBeUndefined();
    expect(replay(connectionMachine, firedEarly(60), { toleranceMs: 10 }).divergence).toBeDefined();
  });

  it('replay - chatgate replay --tolerance-ms raises the tolerance', async () => {
    const path = await toFile('early.jsonl', firedEarly(160));
    const strict = await runChatgate(['replay', path]);
    expect(strict.code, strict.stderr).toBe(1);
    const lenient = await runChatgate(['replay', path, '--tolerance-ms', '200']);
    expect(lenient.code, lenient.stderr).toBe(0);
    expect(lenient.stdout).toContain('MATCHES');
  });
});

describe('recording - the format', () => {
  const refused = (text: string) => {
    try {
      parseRecordings(text);
    } catch (err) {
      expect(err).toBeInstanceOf(RecordingFormatError);
      return (err as Error).message;
    }
    throw new Error('parsed');
  };

  it('recording - another format version, a line that is not JSON, and a line that is not ours are refused by line', () => {
    const [header, first, ...others] = fixtureText.trim().split('\n');
    const format2 = JSON.stringify({ ...JSON.parse(header!), format: 2 });
    expect(refused([format2, first].join('\n'))).toBe('line 1: not a recording header (format 1)');
    expect(refused([header, first, '{oops'].join('\n'))).toBe('line 3 is not JSON');
    expect(refused([header, '{"kind":"state"}'].join('\n'))).toBe('line 2: not a recorded observation');
    expect(parseRecordings([header, first, ...others].join('\n')).recordings).toHaveLength(1);
  });

  it('recording - lines of an actor whose header was not captured are counted, not replayed', () => {
    const [, ...observations] = fixtureText.trim().split('\n');
    expect(parseRecordings(observations.join('\n'))).toEqual({ recordings: [], orphans: observations.length });
  });

  it('replay - chatgate replay exits 2 with one line naming the bad line', async () => {
    const [header, first] = fixtureText.trim().split('\n');
    const path = join(dir, 'format2.jsonl');
    await writeFile(path, `${JSON.stringify({ ...JSON.parse(header!), format: 2 })}\n${first}\n`);
    const result = await runChatgate(['replay', path]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('line 1: not a recording header (format 1)');
  });
});
