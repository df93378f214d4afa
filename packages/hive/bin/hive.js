#!/usr/bin/env node
// Entry point for `npx hive`; the code is TypeScript run by Node's type stripping.
import { main } from "../src/cli.ts";

process.exitCode = await main(process.argv.slice(2));
