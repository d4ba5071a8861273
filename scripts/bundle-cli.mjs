// Bundles the compiled CLI (dist/src/client/cli.js) and its dependencies into one file,
// dist/ringfence.mjs, which bin/ringfence prefers. Why: a CLI run is a process start, and resolving
// and loading ~200 modules is most of it — 0.54 s against 0.32 s natively, and 10+ s against a few
// under qemu TCG over 9p, where every CLI test pays it. koffi stays external: it loads a native
// addon at run time.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/src/client/cli.js'],
  outfile: 'dist/ringfence.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['koffi'],
  // Bundled CommonJS dependencies (grpc-js) call require() for Node built-ins.
  banner: { js: "import { createRequire as __ringfenceCreateRequire } from 'node:module'; const require = __ringfenceCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
  logLevel: 'warning',
});
