import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { ioFileIn, limitsAcceptance } from "../acceptance.ts";

// This host is hybrid: v1 controllers plus a controller-less v2 mount.
// /var/tmp is on the real disk (not tmpfs), so O_DIRECT writes reach the block layer.
limitsAcceptance("v1", ioFileIn(mkdtempSync(join("/var/tmp", "apiary-test-io-"))));
