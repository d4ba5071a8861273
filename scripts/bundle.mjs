// Bundles the compiled CLI and daemon (dist/src/...) into one file each, dist/ringfence.mjs and
// dist/ringfenced.mjs, which bin/ringfence and bin/ringfenced prefer. Why: starting is resolving
// and loading a few hundred modules — 0.54 s against 0.32 s natively for the CLI, and under qemu
// TCG over 9p, where every test pays it, 10+ s against a few for the CLI and 29-53 s against 18-20
// for the daemon (2026-12-07, lts guest). koffi stays external: it loads a native addon at run time.
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Bundled CommonJS dependencies (grpc-js) call require() for Node built-ins.
  banner: { js: "import { createRequire as __ringfenceCreateRequire } from 'node:module'; const require = __ringfenceCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
  logLevel: 'warning',
};

await build({ ...common, entryPoints: ['dist/src/client/cli.js'], outfile: 'dist/ringfence.mjs', external: ['koffi'] });

// The daemon's health and reflection packages read .proto files next to their own modules and
// require their own @grpc/grpc-js, which must be the daemon's (one copy, the patched one); pino
// starts transports from files. Those load from node_modules as before (health and reflection only
// at their first call: src/daemon/api/lazy-package.ts); the daemon's own modules, protobuf-es and
// the rest, most of the count, are bundled. Bundling grpc-js as well made no measurable difference
// to a start in the guest (A/B, 2026-12-07).
await build({
  ...common,
  entryPoints: ['dist/src/daemon/main.js'],
  outfile: 'dist/ringfenced.mjs',
  external: ['koffi', '@grpc/grpc-js', '@grpc/proto-loader', '@grpc/reflection', 'grpc-health-check', 'pino'],
});
