import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, describe, expect, it } from "vitest";

// A worker that ends while its hive is down: its end was not seen, so its
// end time and duration are null, with the bounds that are known — never
// the restart time passed off as the end.
describe("a worker that ended while its hive was down", () => {
	const dir = tempDir("fault-unobserved");
	const root = newCgroupRoot();
	let hive: Daemon | null = null;
	afterAll(async () => {
		await hive?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("is recorded lost with endedAt and durationMs null, endedAfter before the real end and endedBefore after it", async () => {
		const args = { name: "unobs", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "200ms" };
		hive = await startHive(args);
		const w = (
			await json(`${hive.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ id: "gone", command: ["sleep", "60"] }),
			})
		).body;
		// A tick has marked the hive alive since the spawn (a slow machine may take more than a few ticks' time).
		const started = Date.parse(w.startedAt);
		await until(() => Number(readFileSync(join(dir, "hive", "alive"), "latin1")) > started, 10_000, "an alive mark after the spawn");
		await hive.stop("SIGKILL");
		hive = null;
		const endedAt = Date.now();
		process.kill(w.pid, "SIGKILL");
		await sleep(1500);
		hive = await startHive(args);
		const exit = await until(async () => (await json(`${hive!.url}/v1/workers/gone`)).body?.exit, 10_000, "the exit record");
		expect(exit).toMatchObject({ reason: "lost", endedAt: null, durationMs: null, exitCode: null, message: expect.stringMatching(/time unknown/) });
		expect(Date.parse(exit.endedAfter)).toBeLessThanOrEqual(endedAt);
		expect(Date.parse(exit.endedAfter)).toBeGreaterThan(Date.parse(exit.startedAt)); // the alive mark, not just the start
		expect(Date.parse(exit.endedBefore)).toBeGreaterThanOrEqual(endedAt + 1000);
	});
});
