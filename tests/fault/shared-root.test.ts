import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, tempDir } from "@apiary/test-support/procs";
import { sleep } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// A second hive on a host with the first one's cgroup root (or state dir)
// used to re-adopt the first one's workers and, as "lost", remove them. One
// hive per cgroup root and per state dir: the second refuses to start.
describe("one hive per cgroup root and state dir", () => {
	const dir = tempDir("fault-lock");
	const root = newCgroupRoot();
	const other = newCgroupRoot();
	let first: Daemon;
	beforeAll(async () => {
		first = await startHive({ name: "owner", stateDir: join(dir, "a"), cgroupRoot: root });
		const w = await json(`${first.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "mine", command: ["sleep", "60"] }),
		});
		expect(w.status).toBe(201);
	});
	afterAll(async () => {
		await first.stop();
		await removeCgroupRoot(root);
		await removeCgroupRoot(other);
		removeDir(dir);
	});

	it("a second hive with the same --cgroup-root but its own state dir refuses to start, naming the root; the first's worker runs on", async () => {
		await expect(startHive({ name: "intruder", stateDir: join(dir, "b"), cgroupRoot: root })).rejects.toThrow(
			/exited 1: [\s\S]*cgroup root \S+ is in use by another hive \(pid \d+\)/,
		);
		await sleep(300);
		expect((await json(`${first.url}/v1/workers/mine`)).body).toMatchObject({ state: "running", exit: null });
	});

	it("a second hive with the same state dir but another root refuses to start, naming the state dir", async () => {
		await expect(startHive({ name: "intruder", stateDir: join(dir, "a"), cgroupRoot: other })).rejects.toThrow(
			/exited 1: [\s\S]*state dir \S+ is in use by another hive/,
		);
		expect((await json(`${first.url}/v1/workers/mine`)).body).toMatchObject({ state: "running", exit: null });
	});

	it("a lock left by a hive that died is taken over (a restart after kill -9 works)", async () => {
		const c = await startHive({ name: "crashy", stateDir: join(dir, "c"), cgroupRoot: other });
		await c.stop("SIGKILL");
		const again = await startHive({ name: "crashy", stateDir: join(dir, "c"), cgroupRoot: other });
		expect((await json(`${again.url}/healthz`)).status).toBe(200);
		await again.stop();
	});
});
