/**
 * The layout of src/ (see the README's "Layout" section) kept true by its imports: no import
 * cycles (type-only and lazy `import()` imports count too), no wing imports the cli wing (src/cli/
 * is the top: it may import everything, nothing imports it), and machines/ imports nothing from
 * src/ (the machines are pure).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

/** Every relative module a file imports, statically, as a type, re-exported, or lazily. */
export function importsOf(file: string, text: string): string[] {
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\s[^'"`;]*?\sfrom\s+['"]([^'"]+)['"]/gms),
    ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);
  return specifiers.filter((s) => s.startsWith('.')).map((s) => relative(root, resolve(root, dirname(file), s)));
}

const files = [...sources('src'), ...sources('machines')];
const graph = new Map(files.map((f) => [f, importsOf(f, readFileSync(join(root, f), 'utf8'))]));

/** The cycles of the graph, each once, as paths that end where they start. */
function cycles(g: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const done = new Set<string>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const visit = (node: string) => {
    stack.push(node);
    onStack.add(node);
    for (const next of g.get(node) ?? []) {
      if (onStack.has(next)) found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!done.has(next) && g.has(next)) visit(next);
    }
    stack.pop();
    onStack.delete(node);
    done.add(node);
  };
  for (const node of g.keys()) if (!done.has(node)) visit(node);
  return found;
}

test('layout - the import scan sees static, type-only, re-exported and lazy imports', () => {
  const text = `import { a } from './a.ts';\nimport type { B } from '../b.ts';\nexport { c } from './c.ts';\nimport {\n  d,\n} from './d.ts';\nconst e = await import('./e.ts');\nimport './f.ts';\nimport { z } from 'zod';\n`;
  expect(importsOf('src/x/y.ts', text).sort()).toEqual(
    ['src/x/a.ts', 'src/b.ts', 'src/x/c.ts', 'src/x/d.ts', 'src/x/e.ts', 'src/x/f.ts'].sort(),
  );
  expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]))).toEqual([['a', 'b', 'c', 'a']]);
});

test('layout - src/ and machines/ have no import cycles', () => {
  expect(cycles(graph).map((c) => c.join(' → '))).toEqual([]);
});

test('layout - nothing outside src/cli/ imports src/cli/', () => {
  const wrong = [...graph].flatMap(([file, imports]) =>
    file.startsWith('src/cli/') ? [] : imports.filter((i) => i.startsWith('src/cli/')).map((i) => `${file} → ${i}`),
  );
  expect(wrong).toEqual([]);
});

test('layout - machines/ imports nothing from src/', () => {
  const wrong = [...graph].flatMap(([file, imports]) =>
    file.startsWith('machines/') ? imports.filter((i) => i.startsWith('src/')).map((i) => `${file} → ${i}`) : [],
  );
  expect(wrong).toEqual([]);
});
