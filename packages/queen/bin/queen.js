#!/usr/bin/env node
// Entry point for `npx queen`. The code is TypeScript run by Node's type
// stripping, which needs Node >= 22.18 (npm ci installs Node 24 into
// node_modules/.bin, which npx and npm scripts put first on PATH).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
	process.stderr.write(`queen: Node ${process.versions.node} cannot run TypeScript directly; use Node >= 22.18, e.g. "npx queen" after "npm ci"\n`);
	process.exit(1);
}
// The daemon's young generation. V8 sizes it from the machine's memory (128
// MiB of new space on a 24 GiB host) and, under a steady stream of
// heartbeats, never shrinks it back; at 16 MiB semi-spaces the queen's CPU per
// heartbeat is unchanged and its RSS ~100 MiB lower (docs/BENCHMARKS.md,
// row 7). A size the user gives (on the command line or in NODE_OPTIONS)
// wins. process.execve (Node >= 22.15) restarts Node with the flag in the
// same process: same pid, same stdio, nothing run twice.
const SEMI = "--max-semi-space-size";
const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)].some((a) => a.startsWith(SEMI));
if (process.argv[2] === "start" && !given && typeof process.execve === "function") {
	process.execve(process.execPath, [process.execPath, `${SEMI}=16`, ...process.execArgv, ...process.argv.slice(1)], process.env);
}
// Node caches the stripped and compiled modules (in the OS temp dir), so a
// client command after the first starts in about twice a bare Node's time
// instead of paying for type stripping every run (docs/BENCHMARKS.md, CLI).
const { enableCompileCache } = await import("node:module");
enableCompileCache?.();
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
