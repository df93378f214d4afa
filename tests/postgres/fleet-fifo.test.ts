import { join } from "node:path";
import type { PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { type Daemon, FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// First come, first served across queens (issue #25): a request on one queen
// must not overtake a waiter queued earlier on another for the same hive.
// Built so that overtaking is what happens without the fleet's shared line:
// the waiter wants all eight GPUs, the newcomer four, and four come free first.

describe("placement waits are first come, first served fleet-wide", () => {
	const dir = tempDir("fleet-fifo");
	const root = newCgroupRoot();
	const queens: Daemon[] = [];
	let hive: Daemon;
	beforeAll(async () => {
		for (let i = 0; i < 2; i++) queens.push(await startQueen({ db: join(dir, "fleet.db"), staleAfter: "2s", evictAfter: "60s" }));
		hive = await startHive({
			queen: queens[0]!.url,
			name: "fifo",
			stateDir: join(dir, "hive"),
			cgroupRoot: root,
			interval: "250ms",
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
		});
		for (const q of queens)
			await until(async () => (await json(`${q.url}/v1/gpus?free=true&hive=fifo`)).body.length === 8, 20_000, "eight free GPUs on every queen");
	}, 60_000);
	afterAll(async () => {
		await hive?.stop();
		for (const q of queens) await q.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	const place = (q: Daemon, body: object) =>
		json<PlacementAnswer>(`${q.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	const state = async (id: string) => (await json<QueenWorkerView>(`${queens[0]!.url}/v1/workers/${id}`)).body?.state;
	const stop = (id: string) => json(`${queens[0]!.url}/v1/workers/${id}?hive=fifo`, { method: "DELETE" });

	it("a waiter on one queen keeps its turn against a newcomer on another that could fit sooner", async () => {
		const [q0, q1] = queens;
		for (const id of ["x", "y"]) expect((await place(q0!, { id, hive: "fifo", command: ["sleep", "60"], gpus: { count: 4 } })).status).toBe(201);
		// The waiter, on q1 (the hive is q0's): all eight GPUs.
		const first = place(q1!, { id: "first", hive: "fifo", command: ["sleep", "60"], gpus: { count: 8 }, waitMs: 60_000 });
		await until(async () => (await json(`${q1!.url}/v1/placements`)).body?.pending?.length === 1, 10_000, "first waits on q1");
		// The newcomer, on q0: four GPUs, which come free before eight do.
		const second = place(q0!, { id: "second", hive: "fifo", command: ["sleep", "60"], gpus: { count: 4 }, waitMs: 60_000 });
		let secondDone = false;
		void second.then(() => (secondDone = true));
		await sleep(500);
		expect(await stop("x")).toMatchObject({ status: 200 });
		await until(async () => (await json(`${q0!.url}/v1/gpus?free=true&hive=fifo`)).body.length === 4, 10_000, "four GPUs free");
		// Four free GPUs, and the newcomer waits: they are the first waiter's to take once four more come.
		await sleep(2000);
		expect(secondDone).toBe(false);
		expect(await state("second")).toBeUndefined();
		expect(await stop("y")).toMatchObject({ status: 200 });
		const got = await first;
		expect(got.status).toBe(201);
		expect(got.body.gpus).toHaveLength(8);
		expect(secondDone).toBe(false);
		// Then the newcomer, when the first is done.
		expect(await stop("first")).toMatchObject({ status: 200 });
		expect((await second).status).toBe(201);
		await stop("second");
	});
});
