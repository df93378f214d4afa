#!/usr/bin/env node
// Entry point for `npx queen`. The code is TypeScript run by Node's type
// stripping, which needs Node >= 22.18 (npm ci installs Node 24 into
// node_modules/.bin, which npx and npm scripts put first on PATH).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
	process.stderr.write(`queen: Node ${process.versions.node} cannot run TypeScript directly; use Node >= 22.18, e.g. "npx queen" after "npm ci"\n`);
	process.exit(1);
}
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
