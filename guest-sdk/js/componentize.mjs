#!/usr/bin/env node
// componentize.mjs: builds a Sluice plugin component from a JavaScript module,
// through the `componentize()` API of componentize-js (StarlingMonkey engine).
//
//   node sdk/componentize.mjs [--wit DIR] [--world interceptor|decoder|router]
//                             [--root DIR] -o OUT.wasm PLUGIN.js
//
// PLUGIN.js exports `process(event, config)` (and optionally `configure(raw)`);
// see sluice.js. This script writes a small entry module that wraps it into the
// world's export (`intercept`, `decode` or `route`) with `exportsFor`, then
// componentizes that.
//
// Options:
//   --wit DIR    the sluice:plugin WIT package (default: the nearest `wit/`
//                directory at or above PLUGIN.js)
//   --world W    the world to build (default: interceptor)
//   --root DIR   directory holding every module the plugin imports, this SDK
//                included (default: the current directory if PLUGIN.js is in
//                it, else PLUGIN.js's directory). Only files under it are
//                visible while componentizing.
//   -o OUT       where to write the component
//
// componentize-js is found through $SLUICE_COMPONENTIZE_JS (its package
// directory; scripts/toolchains/js.sh sets it), else as the npm package
// `@bytecodealliance/componentize-js` installed at or above this script
// (`npm install @bytecodealliance/componentize-js@0.23` in the plugin dir).

import { existsSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const EXPORTS = { interceptor: 'intercept', decoder: 'decode', router: 'route' };

function usage(message) {
  console.error(`componentize: ${message}`);
  console.error(
    'usage: node componentize.mjs [--wit DIR] [--world interceptor|decoder|router] [--root DIR] -o OUT.wasm PLUGIN.js',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { world: 'interceptor' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--wit') opts.wit = value();
    else if (arg === '--world') opts.world = value();
    else if (arg === '--root') opts.root = value();
    else if (arg === '-o' || arg === '--out') opts.out = value();
    else if (arg === '-h' || arg === '--help') usage('help');
    else if (arg.startsWith('-')) usage(`unknown option ${arg}`);
    else if (opts.source) usage(`more than one plugin module (${opts.source}, ${arg})`);
    else opts.source = arg;
  }
  if (!opts.source) usage('no plugin module given');
  if (!opts.out) usage('no output given (-o OUT.wasm)');
  if (!(opts.world in EXPORTS)) usage(`unknown world ${opts.world}`);
  return opts;
}

function findWit(from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'wit');
    if (existsSync(join(candidate, 'worlds.wit'))) return candidate;
    if (dirname(dir) === dir) return null;
  }
}

async function loadComponentize() {
  const dir = process.env.SLUICE_COMPONENTIZE_JS;
  if (dir) {
    const entry = join(dir, 'src', 'componentize.js');
    if (!existsSync(entry)) {
      throw new Error(`SLUICE_COMPONENTIZE_JS=${dir} holds no src/componentize.js`);
    }
    return import(pathToFileURL(entry).href);
  }
  try {
    return await import('@bytecodealliance/componentize-js');
  } catch {
    throw new Error(
      'componentize-js not found: source scripts/toolchains/js.sh (sets SLUICE_COMPONENTIZE_JS), ' +
        'or run `npm install @bytecodealliance/componentize-js@0.23` in the plugin directory',
    );
  }
}

/** `./a/b.js` style import specifier of `file` from directory `dir`. */
function specifier(dir, file) {
  const rel = relative(dir, file).split(sep).join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}

function inside(dir, file) {
  const rel = relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const source = resolve(opts.source);
  if (!existsSync(source)) usage(`${opts.source} does not exist`);
  const sdk = join(dirname(fileURLToPath(import.meta.url)), 'sluice.js');
  const cwd = process.cwd();
  const root = resolve(opts.root ?? (inside(cwd, source) ? cwd : dirname(source)));
  if (dirname(root) === root) usage('the root cannot be the filesystem root; pass a narrower --root');
  for (const file of [source, sdk]) {
    if (!inside(root, file)) {
      usage(`${file} is not under the root ${root}; pass --root with a directory holding both`);
    }
  }
  const wit = opts.wit ? resolve(opts.wit) : findWit(dirname(source));
  if (!wit || !statSync(wit).isDirectory()) usage('no WIT directory found; pass --wit');

  const { componentize } = await loadComponentize();
  const entry = join(root, `.sluice-entry-${process.pid}.js`);
  const exportName = EXPORTS[opts.world];
  await writeFile(
    entry,
    `// Generated by componentize.mjs for ${basename(source)}.\n` +
      `import * as plugin from '${specifier(root, source)}';\n` +
      `import { exportsFor } from '${specifier(root, sdk)}';\n` +
      `export const ${exportName} = exportsFor(plugin);\n`,
  );
  let component;
  // componentize-js maps the root into the build sandbox only when it is the
  // current directory or the entry's directory: run from the root.
  process.chdir(root);
  try {
    ({ component } = await componentize({
      sourcePath: entry,
      witPath: wit,
      worldName: opts.world,
      // No fetch(): the host links no wasi:http. stdio (console.* to the host
      // log), clocks and random stay.
      disableFeatures: ['http', 'fetch-event'],
    }));
  } finally {
    process.chdir(cwd);
    await rm(entry, { force: true });
  }
  const out = resolve(opts.out);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
  const kb = (component.length / 1024).toFixed(0);
  console.error(
    `componentize: wrote ${relative(cwd, out) || out} (${kb} KiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
}

main().catch((e) => {
  // The message says what failed (componentize-js includes the engine's own
  // report); the stack only with SLUICE_DEBUG set.
  console.error(`componentize: ${process.env.SLUICE_DEBUG && e && e.stack ? e.stack : e && e.message ? e.message : e}`);
  process.exit(1);
});
