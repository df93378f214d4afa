import { existsSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
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

// The queen's SQLite on a disk that fills: a claim the client was told failed
// stayed listed (in memory, not on disk), the error was SQLite's "cannot
// rollback" instead of its own, /healthz said ok, and hives reconnected twice
// a second into the same failure.
describe("the queen's disk is full", () => {
	const disk = mountTmpfs("3m");
	const dir = tempDir("fault-queen-disk");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon | null = null;
	beforeAll(async () => {
		queen = await startQueen({ db: join(disk.dir, "q.db"), sqlite: true, staleAfter: "2s", evictAfter: "60s" });
	});
	afterAll(async () => {
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		disk.unmount();
		removeDir(dir);
	});

	it("a change that cannot be stored is a 507 with the database's own error, undone in memory; /healthz says so; hives are told to back off; all mends when space returns", async () => {
		hive = await startHive({
			queen: queen.url,
			name: "qfull",
			stateDir: join(dir, "hive"),
			cgroupRoot: root,
			interval: "250ms",
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
		});
		await until(async () => (await json(`${queen.url}/v1/gpus?free=true`)).body?.length === 8, 15_000, "the hive's 8 idle GPUs");
		try {
			writeFileSync(join(disk.dir, "ballast"), Buffer.alloc(8 << 20));
		} catch {
			// ENOSPC once the disk is full: that is the point.
		}
		expect(statfsSync(disk.dir).bavail).toBe(0);
		// Claims and releases until the database's file cannot grow (its WAL may hold some room first).
		const claim = () =>
			json(`${queen.url}/v1/claims`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ count: 1, ttlSeconds: 600, holder: "filler" }),
			});
		let refused: { status: number; body: { message: string } } | null = null;
		for (let i = 0; i < 3000 && !refused; i++) {
			const c = await claim();
			if (c.status !== 201) {
				refused = c;
				break;
			}
			const d = await json(`${queen.url}/v1/claims/${c.body.id}`, { method: "DELETE" });
			if (d.status !== 200) {
				refused = d;
				// A release that failed keeps the claim, in memory as on disk.
				expect((await json<{ id: string }[]>(`${queen.url}/v1/claims`)).body.map((x) => x.id)).toContain(c.body.id);
			}
		}
		expect(refused).not.toBeNull();
		expect(refused!.status).toBe(507);
		expect(refused!.body.message).toMatch(/the queen's store failed: database or disk is full .*nothing was changed/);
		// Nothing the client was told failed is listed.
		const before = (await json<{ id: string; holder: string }[]>(`${queen.url}/v1/claims`)).body.filter((c) => c.holder === "filler").length;
		expect((await claim()).status).toBe(507);
		expect((await json<{ holder: string }[]>(`${queen.url}/v1/claims`)).body.filter((c) => c.holder === "filler")).toHaveLength(before);
		const health = await json(`${queen.url}/healthz`);
		expect(health.status).toBe(503);
		expect(health.body).toMatchObject({ ok: false, store: { ok: false, error: expect.stringMatching(/database or disk is full/) } });
		// A worker exit the queen cannot store: the hive is told to back off (1013), and does.
		const spawned = await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "ender", command: ["true"] }),
		});
		expect(spawned.status).toBe(201);
		await until(() => /the queen cannot store this hive's reports; backing off/.test(hive!.err()), 15_000, "the hive told to back off");
		// Memory says only what the database holds: the exit it could not store is not shown either.
		const meanwhile = await json(`${queen.url}/v1/workers/ender`);
		expect(meanwhile.status === 404 || meanwhile.body.state === "running", JSON.stringify(meanwhile.body)).toBe(true);
		const t0 = hive.err().match(/backing off/g)!.length;
		await sleep(6000);
		// Reconnecting at once would be ~12 tries in 6 s; backing off (0.25, 0.5, 1, 2, 4 s at least) allows 5.
		expect(hive.err().match(/backing off/g)!.length - t0).toBeLessThanOrEqual(5);
		expect(queen.proc.exitCode).toBeNull();
		// Space comes back: the exit record arrives, and changes are stored again.
		rmSync(join(disk.dir, "ballast"));
		await until(async () => (await json(`${queen.url}/v1/workers/ender`)).body?.state === "exited", 40_000, "the exit stored");
		await until(async () => (await json(`${queen.url}/healthz`)).status === 200, 10_000, "healthy again");
		// (Its hive back ready, so its GPUs free again.)
		await until(async () => (await claim()).status === 201, 20_000, "a claim stored again");
	}, 120_000);
});
