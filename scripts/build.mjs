#!/usr/bin/env node
// The package build: `tsc -p tsconfig.build.json` (src/ and machines/ to dist/, JS and .d.ts),
// then the files the admin server reads at run time: src/admin/pages/ and mermaid's browser
// bundle (a dev dependency, so the package ships the one file it serves, not mermaid's 100+
// dependencies).
//
//   node scripts/build.mjs             incremental build (npm run build)
//   node scripts/build.mjs --clean     remove dist/ first (prepare: npm ci, npm pack)
//   node scripts/build.mjs --if-stale  build only if a source is newer than the last build
//                                      (prestart, and the tests' global setup); type errors are
//                                      printed but do not stop it, as vitest runs code with type
//                                      errors too (tsc still emits; .ci/run type-checks)
//
// Plain JavaScript with no dependencies, so that it runs before anything is built.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
/** Written last: a build that stopped halfway is stale. */
const stamp = join(dist, '.build-stamp');
const require = createRequire(import.meta.url);

/** What a build reads; directories count too, so a deleted or renamed file makes it stale. */
const inputs = ['src', 'machines', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'scripts/build.mjs'];

function newestMtime(path) {
  const stat = statSync(path);
  let newest = stat.mtimeMs;
  if (stat.isDirectory()) {
    for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  }
  return newest;
}

export function isStale() {
  if (!existsSync(stamp)) return true;
  const built = statSync(stamp).mtimeMs;
  return inputs.some((input) => newestMtime(join(root, input)) > built);
}

function mermaidBundle() {
  try {
    return require.resolve('mermaid/dist/mermaid.min.js');
  } catch {
    throw new Error('mermaid is missing: it is a dev dependency, install it with `npm ci` before building');
  }
}

/**
 * The client SDK for browsers without a bundler: one minified ES module, xstate inside, at
 * dist/client/chatgate-client.min.js (the package's `./client/browser` export), and beside the
 * admin pages for the demo chat page. esbuild comes with vitest (vite); the build needs it only
 * here.
 */
function bundleClient(pages) {
  let esbuild;
  try {
    esbuild = require('esbuild');
  } catch {
    throw new Error('esbuild is missing: it comes with the dev dependencies (vitest), install them with `npm ci` before building');
  }
  const outfile = join(dist, 'client', 'chatgate-client.min.js');
  esbuild.buildSync({
    entryPoints: [join(root, 'src', 'client', 'index.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outfile,
    legalComments: 'none',
    logLevel: 'warning',
  });
  copyFileSync(outfile, join(pages, 'chatgate-client.js'));
}

/** Returns false when tsc found type errors but wrote the output anyway (allowed only with `lenient`). */
export function build({ clean = false, lenient = false } = {}) {
  // The stamp gets the start time, so an edit made while tsc runs leaves the build stale.
  const started = new Date();
  if (clean) rmSync(dist, { recursive: true, force: true });
  const tsc = require.resolve('typescript/bin/tsc');
  let typeErrors = false;
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  } catch (err) {
    // tsc's exit status 2: errors reported, output written anyway.
    if (!(lenient && err.status === 2)) throw err;
    typeErrors = true;
  }
  const pages = join(dist, 'src', 'admin', 'pages');
  cpSync(join(root, 'src', 'admin', 'pages'), pages, { recursive: true });
  copyFileSync(mermaidBundle(), join(pages, 'mermaid.min.js'));
  bundleClient(pages);
  // No stamp after type errors: the next run builds again and shows them again.
  if (typeErrors) return false;
  mkdirSync(dirname(stamp), { recursive: true });
  writeFileSync(stamp, `${started.toISOString()}\n`);
  utimesSync(stamp, started, started);
  return true;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const ifStale = args.includes('--if-stale');
  if (ifStale && !isStale()) process.exit(0);
  try {
    if (!build({ clean: args.includes('--clean'), lenient: ifStale })) {
      process.stderr.write('build: dist/ written despite the type errors above\n');
    }
  } catch (err) {
    // tsc has printed its errors already; anything else gets one line.
    if (!(err && typeof err === 'object' && 'status' in err)) process.stderr.write(`build: ${err.message}\n`);
    process.exit(1);
  }
}
