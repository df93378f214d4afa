#!/usr/bin/env node
// Entry point for `npx queen`. The code is TypeScript run by Node's type
// stripping, which needs Node >= 22.18 (npm ci installs Node 24 into
// node_modules/.bin, which npx and npm scripts put first on PATH).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
	process.stderr.write(`queen: Node ${process.versions.node} cannot run TypeScript directly; use Node >= 22.18, e.g. "npx queen" after "npm ci"\n`);
	process.exit(1);
}
// Node caches the stripped and compiled modules (in the OS temp dir), so a
// client command after the first starts in about twice a bare Node's time
// instead of paying for type stripping every run (docs/BENCHMARKS.md, CLI).
const { enableCompileCache } = await import("node:module");
enableCompileCache?.();
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
