/**
 * Runs once before the tests (vitest `globalSetup`): builds dist/ when a source is newer than the
 * last build, so tests that start `chatgate` as a child process (process.ts) run the compiled CLI
 * of the code under test, as the package does, however the tests were started (`npm test`,
 * `npx vitest run FILE`). Nothing to do costs a few milliseconds; a build after an edit, seconds.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const build = fileURLToPath(new URL('../../scripts/build.mjs', import.meta.url));
  execFileSync(process.execPath, [build, '--if-stale'], { stdio: 'inherit' });
}
