import { existsSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { mountTmpfs } from "@apiary/test-support/tmpfs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// A worker filled the hive's disk with its output; when it exited the hive
// died on ENOSPC and would not start again. Now: the hive keeps running and
// keeps the record in memory, says so (healthz, snapshot, the queen),
// refuses new workers with a 507, writes the record once it can, and starts
// on a full disk.
describe("the state dir's disk is full", () => {
	const disk = mountTmpfs("4m");
	const dir = tempDir("fault-disk");
	const root = newCgroupRoot();
	const stateDir = join(disk.dir, "hive");
	let queen: Daemon;
	let hive: Daemon | null = null;
	const args = () => ({ queen: queen.url, name: "diskfull", stateDir, cgroupRoot: root, interval: "250ms" });
	const post = (body: object) =>
		json(`${hive!.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db") });
		hive = await startHive(args());
	});
	afterAll(async () => {
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		disk.unmount();
		removeDir(dir);
	});

	it("a worker fills it and exits: the hive lives on, keeps its record, says so, refuses spawns with 507, and writes the record once it can", async () => {
		expect((await post({ id: "filler", command: ["yes"] })).status).toBe(201);
		// `yes` writes until the disk is full, then fails its write and exits 1.
		const exit = await until(async () => (await json(`${hive!.url}/v1/workers/filler`)).body.exit, 20_000, "the filler's exit");
		expect(statfsSync(disk.dir).bavail).toBe(0);
		expect(exit).toMatchObject({ reason: "exited", exitCode: 1 });
		expect(hive!.proc.exitCode).toBeNull(); // alive
		const health = (await json(`${hive!.url}/healthz`)).body;
		expect(health.storage).toMatchObject({ ok: false, error: expect.stringMatching(/ENOSPC/), pendingRecords: 1 });
		// The snapshot is the last tick's: the next one carries the condition.
		await until(async () => (await json(`${hive!.url}/v1/snapshot`)).body.storage.ok === false, 5000, "the snapshot says so");
		await until(async () => (await json(`${queen.url}/v1/hives/diskfull`)).body?.storage?.ok === false, 5000, "the queen told");
		const refused = await post({ id: "more", command: ["sleep", "1"] });
		expect(refused).toMatchObject({
			status: 507,
			body: { error: "Insufficient Storage", message: expect.stringMatching(/state dir .* cannot be written \(.*ENOSPC.*\)/) },
		});
		expect(existsSync(`/sys/fs/cgroup/memory/${root}/workers/more`)).toBe(false);
		expect(readdirSync(join(stateDir, "workers")).filter((f) => f.endsWith(".tmp"))).toEqual([]);
		// Space comes back: the record is written at the next tick and spawns work again.
		for (const f of readdirSync(join(stateDir, "logs"))) rmSync(join(stateDir, "logs", f));
		await until(async () => (await json(`${hive!.url}/healthz`)).body.storage.ok === true, 5000, "storage ok again");
		expect(JSON.parse(readFileSync(join(stateDir, "workers", "filler.json"), "utf8")).exit).toMatchObject({ reason: "exited", exitCode: 1 });
		expect((await post({ id: "after", command: ["true"] })).status).toBe(201);
	});

	it("a hive starts on a full disk", async () => {
		await hive!.stop();
		hive = null;
		try {
			writeFileSync(join(disk.dir, "ballast"), Buffer.alloc(8 << 20));
		} catch {
			// ENOSPC once the disk is full: that is the point.
		}
		expect(statfsSync(disk.dir).bavail).toBe(0);
		hive = await startHive(args());
		expect((await json(`${hive.url}/healthz`)).status).toBe(200);
		await sleep(600);
		expect(hive.proc.exitCode).toBeNull();
	});
});
