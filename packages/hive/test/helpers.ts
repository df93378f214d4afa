import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CgroupDriverName } from "@apiary/protocol";
import type { CgroupDriver } from "../src/cgroup/driver.ts";
import { createDriver, detect } from "../src/cgroup/detect.ts";
import { Hive } from "../src/hive.ts";
import { CLK_TCK, parseProcStat } from "../src/proc.ts";

export const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
export const fakeSmi = (scenario: string) => join(FIXTURES, "nvidia-smi", scenario);

/** A fresh cgroup root named apiary-test-* (removed by `cleanup`) and a temp state dir. */
export function testRoot(kind: CgroupDriverName): { driver: CgroupDriver; rootName: string; stateDir: string } {
	const rootName = `apiary-test-${randomBytes(4).toString("hex")}`;
	const d = detect({ requested: kind, cgroupRoot: kind === "v2" ? `/sys/fs/cgroup/${rootName}` : rootName });
	return { driver: createDriver(d), rootName, stateDir: mkdtempSync(join(tmpdir(), "apiary-test-")) };
}

/** Kill every worker the hive still runs, stop it, remove its cgroup root and state dir. */
export async function cleanup(hive: Hive, stateDir: string): Promise<void> {
	for (const w of hive.list()) if (w.state === "running") await hive.kill(w.id).catch(() => {});
	await hive.stop();
	// Whatever a crashed test left in the tree goes too.
	for (const id of hive.driver.list()) {
		await hive.driver.killAll(id, 0);
		await hive.driver.remove(id);
	}
	await hive.driver.destroyRoot();
	rmSync(stateDir, { recursive: true, force: true });
}

export async function newHive(kind: CgroupDriverName, extra: Partial<ConstructorParameters<typeof Hive>[0]> = {}) {
	const { driver, stateDir } = testRoot(kind);
	const hive = new Hive({ driver, stateDir, hiveId: "test-hive", ...extra });
	await hive.start();
	return { hive, stateDir, driver };
}

/** utime+stime of a process, seconds. */
export function procCpuSeconds(pid: number): number {
	const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, "latin1"));
	return (s.utimeTicks + s.stimeTicks) / CLK_TCK;
}

export { sleep, until } from "@apiary/test-support/util";
import { until } from "@apiary/test-support/util";

export async function waitExit(hive: Hive, id: string, ms = 20_000) {
	return until(() => (hive.get(id)?.state === "exited" ? hive.get(id) : null), ms, `worker ${id} to exit`);
}
