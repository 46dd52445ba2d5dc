// The daemon's two entry points bundled in place, after tsc (npm run build): dist/src/dataplane/worker.js
// (each worker thread's module) and dist/src/cli/up.js (what `userfan up` loads on top of the CLI).
//
// Why (issue 22, RSS per daemon): each ES module costs its isolate some 18 KiB of heap (its record,
// namespace, scopes, the loader's bookkeeping), and a daemon loaded about 50 of ours in the main thread
// and 41 in every worker. One module each instead: about 0.9 MiB less in the main isolate and 0.9 MiB
// less in each worker's (measured with bench/scale.ts; docs/performance.md, RSS per daemon).
//
// What stays as it was:
//   - tsc's output stays complete and runnable: this only rewrites those two files. A later tsc run
//     writes them back unbundled (correct, only larger), so a bundle is never stale;
//   - packages (node_modules) and node's own modules stay imports: piscina finds its worker by path;
//   - modules the CLI has loaded before it imports up.js (main.js's static imports: ConfigError and the
//     fan parser) stay imports of their own files, so up.js shares them, and `instanceof ConfigError` in
//     src/cli/cli.ts still holds for errors thrown by the daemon;
//   - import.meta.url in a bundled module is the bundle's: src/dataplane/pool.ts names its worker as
//     '../dataplane/worker.js' (right from dataplane/ and from cli/), src/io/native.ts and createRequire
//     look upwards, which both places share.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const DIST = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/src');
const bare = (id) => !id.startsWith('.') && !isAbsolute(id);

/** The files main.js loads before it runs (its static imports, transitively), by rolldown's own graph. */
async function staticClosure(entry) {
  const graph = new Map();
  const b = await rolldown({ input: entry, platform: 'node', external: bare, plugins: [{ name: 'graph', moduleParsed: (m) => void graph.set(m.id, m.importedIds) }] });
  await b.generate({ format: 'esm' });
  await b.close();
  const seen = new Set();
  const walk = (id) => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const next of graph.get(id) ?? []) walk(next);
  };
  walk(entry);
  return seen;
}

/** Each module with tsc's source map, so that the bundle's map leads to src/*.ts as tsc's did. */
const tscMaps = {
  name: 'tsc-maps',
  load(id) {
    if (!id.startsWith(DIST) || !existsSync(`${id}.map`)) return null;
    return { code: readFileSync(id, 'utf8').replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n'), map: readFileSync(`${id}.map`, 'utf8') };
  },
};

/** Rewrites `entry` as one module with what it imports, but for `shared` files and packages. */
async function bundleInPlace(entry, shared = new Set()) {
  const external = (id, importer) => bare(id) || shared.has(importer ? resolve(dirname(importer), id) : id);
  const b = await rolldown({ input: entry, platform: 'node', external, plugins: [tscMaps] });
  const { output } = await b.generate({ file: entry, format: 'esm', sourcemap: true, codeSplitting: false });
  await b.close();
  const [chunk, ...rest] = output.filter((o) => o.type === 'chunk');
  if (!chunk || rest.length) throw new Error(`bundle of ${entry}: expected one chunk, got ${output.length}`);
  const url = `//# sourceMappingURL=${basename(entry)}.map`;
  writeFileSync(entry, chunk.code.includes(url) ? chunk.code : `${chunk.code}\n${url}\n`);
  writeFileSync(`${entry}.map`, chunk.map.toString());
  return chunk.moduleIds.length;
}

const main = resolve(DIST, 'main.js');
const shared = await staticClosure(main);
const worker = await bundleInPlace(resolve(DIST, 'dataplane/worker.js'));
const up = await bundleInPlace(resolve(DIST, 'cli/up.js'), shared);
console.log(`bundled dist/src/dataplane/worker.js (${worker} modules) and dist/src/cli/up.js (${up} modules; ${shared.size} shared with the CLI)`);
