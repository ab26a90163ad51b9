#!/usr/bin/env node
// Entry point of the `chatgate` command: loads the TypeScript sources through tsx's ESM hooks
// (no build step), then hands over to src/cli/cli.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/cli.ts');
await main(process.argv);
