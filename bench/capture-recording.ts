/**
 * Captures the committed fixture test/fixtures/session.recording.jsonl from a real run: a real
 * nats-server (free port), the auth service and one gateway recording one user's connections to a
 * file, and a real WebSocket client playing test/replay/scenario.ts. Keeps that user's connection
 * recording only (header and lines), checks that it replays, and writes it.
 *
 *   npx tsx bench/capture-recording.ts [--out test/fixtures/session.recording.jsonl]
 *
 * Run it again when a change of the connection machine is meant to change what a session lives;
 * the regression test in test/replay/replay.test.ts then passes with the new fixture.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectionMachine } from '../machines/connection.machine.ts';
import { formatReplay, replay } from '../src/observe/replay.ts';
import { parseRecordings } from '../src/observe/recording.ts';
import { startStack } from '../test/harness/stack.ts';
import { playSession, scenarioGateway } from '../test/replay/scenario.ts';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'test/fixtures/session.recording.jsonl' } } });
const USER = 'fixture-alice';

const dir = await mkdtemp(join(tmpdir(), 'chatgate-capture-'));
const path = join(dir, 'node.recording.jsonl');
const stack = await startStack({ gateway: { ...scenarioGateway, recording: { to: 'file', path, user: USER } } });
let session: string;
try {
  ({ session } = await playSession(stack, 0, USER));
  // Closing the node flushes the file.
  await stack.gateways[0]!.close();
} finally {
  await stack.stop();
}
const text = await readFile(path, 'utf8');
await rm(dir, { recursive: true, force: true });

const lines = text
  .split('\n')
  .filter((line) => line && (JSON.parse(line) as { machine?: string; session?: string }).session === session);
const fixture = `${lines.join('\n')}\n`;
const recording = parseRecordings(fixture).recordings[0];
if (!recording) throw new Error(`no recording of session ${session} in ${path}`);
const result = replay(connectionMachine, recording);
process.stdout.write(formatReplay(result));
if (!result.matches) throw new Error('the captured recording does not replay: not written');
await writeFile(values.out!, fixture);
process.stdout.write(`${values.out}: ${lines.length} lines, ${fixture.length} bytes\n`);
