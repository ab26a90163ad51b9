#!/usr/bin/env node
// Entry point of the `chatgate` command: the compiled CLI in dist/, plain JavaScript, no
// TypeScript at run time. The package ships dist/; in a clone, `npm ci` builds it (prepare),
// and `npm run build` rebuilds it.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('chatgate: dist/ is not built: run `npm run build` (npm ci does it)\n');
  process.exit(1);
}
const { main } = await import(cli.href);
await main(process.argv);
