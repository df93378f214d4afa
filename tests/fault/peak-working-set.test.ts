import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const MiB = 2 ** 20;

// On cgroup v1 the kernel's peak (memory.max_usage_in_bytes) counts page
// cache: `yes > file` reported 15.6 GB. The exit record gives the peak
// working set the ticks saw beside it.
describe("peak memory beside peak working set", () => {
	const dir = tempDir("fault-peak");
	const root = newCgroupRoot();
	let hive: Daemon;
	beforeAll(async () => {
		hive = await startHive({ name: "peak", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "200ms" });
	});
	afterAll(async () => {
		await hive.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("a worker that writes 96 MiB to a file: the kernel's peak counts the cache, the working set does not", async () => {
		const file = join(dir, "cache-me");
		const body = { id: "writer", command: ["sh", "-c", `head -c ${96 * MiB} /dev/zero > ${file}; sleep 1.5`] };
		expect((await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).status).toBe(
			201,
		);
		const exit = await until(async () => (await json(`${hive.url}/v1/workers/writer`)).body.exit, 20_000, "exit");
		expect(exit.peakMemoryBytes).toBeGreaterThan(64 * MiB);
		expect(exit.peakWorkingSetBytes).not.toBeNull();
		expect(exit.peakWorkingSetBytes).toBeLessThan(32 * MiB);
	});
});
