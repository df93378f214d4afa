import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll } from "vitest";
import { ioFileIn, limitsAcceptance } from "../acceptance.ts";

// This host is hybrid: v1 controllers plus a controller-less v2 mount.
// /var/tmp is on the real disk (not tmpfs), so O_DIRECT writes reach the block layer.
const ioDir = mkdtempSync(join("/var/tmp", "apiary-test-io-"));
afterAll(() => rmSync(ioDir, { recursive: true, force: true }));
limitsAcceptance("v1", ioFileIn(ioDir));
