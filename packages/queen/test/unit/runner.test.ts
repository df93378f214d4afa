import type { PlacementAnswer, PlacementBody, QueenWorkerView, RunView } from "@apiary/protocol";
import { endedWorker } from "@apiary/test-support/fake-hive";
import { until } from "@apiary/test-support/util";
import { afterEach, describe, expect, it } from "vitest";
import { EventLog } from "../../src/events.ts";
import type { HiveCommander } from "../../src/hive-commands.ts";
import { PlacementError, type Placer } from "../../src/placement/placer.ts";
import { Registry } from "../../src/registry.ts";
import { Runs } from "../../src/runs/runner.ts";
import { newAttempt } from "../../src/runs/shards.ts";
import { SqliteStore as Store } from "../../src/store/sqlite.ts";

// A run carried on by a queen that did not watch it start (a restart, or a
// run taken over from a queen that stopped or let it go): its shard's worker
// may have started, and even ended, with nothing of it in the run's record or
// this queen's memory. The soak found such runs left `running` for ever (#21).
// Real registry, event log and SQLite store; the placer answers as scripted,
// the one part a unit test stands in for (the hive behind it is the point of
// the integration tiers).

const HIVE = "h1";
const stored = (id: string): QueenWorkerView => {
	const { env: _e, exit, ...w } = endedWorker(id, 1000, []);
	return { ...w, hiveId: HIVE, state: "exited", exit: exit ?? null };
};

/** A run as its first queen left it: one shard, its attempt being placed (the placement's answer not recorded). */
function leftRun(id: string): RunView {
	return {
		id,
		state: "running",
		createdAt: new Date().toISOString(),
		finishedAt: null,
		idempotencyKey: null,
		body: { command: ["true"], shards: 1 },
		exitCode: null,
		message: null,
		shards: [
			{
				index: 0,
				state: "running",
				attempts: [newAttempt(`${id}-0-1`)],
			},
		],
	};
}

describe("a run's shard whose worker began before this queen followed it", () => {
	const open: Runs[] = [];
	afterEach(() => {
		for (const r of open.splice(0)) r.close();
	});

	function setup(place: (body: PlacementBody, n: number) => Promise<PlacementAnswer>) {
		const store = new Store(":memory:");
		const events = new EventLog(store);
		const registry = new Registry(store, events, { staleAfterMs: 3000, evictAfterMs: 90_000, busyMemoryMiB: 1024 });
		const asked: string[] = [];
		const placer = { place: (body: PlacementBody) => (asked.push(body.id!), place(body, asked.length)) } as unknown as Placer;
		const commands: HiveCommander = { command: async () => ({ status: 200 }), isConnected: () => true };
		const runs = new Runs(registry, placer, commands);
		open.push(runs);
		const view = async (id: string) => (await runs.get(id)) as RunView;
		return { store, registry, runs, asked, view };
	}

	it("ended while no queen watched, and known to the database only: settled from its record, not placed again", async () => {
		const t = setup(async () => {
			throw new Error("not to be placed");
		});
		t.store.shardRuns.save(leftRun("r-aaaa0001"));
		t.store.workers.save(stored("r-aaaa0001-0-1"));
		await t.runs.adopt();
		const v = await until(async () => ((await t.view("r-aaaa0001")).state !== "running" ? t.view("r-aaaa0001") : null), 5000, "the run ends");
		expect(v.state).toBe("passed");
		expect(v.shards[0]!.attempts).toHaveLength(1);
		expect(v.shards[0]!.attempts[0]).toMatchObject({ hiveId: HIVE, result: "passed", exitCode: 0 });
		expect(t.asked).toEqual([]);
	});

	it("placed again under its key and answered with a worker whose exit was logged before: settled, not left running", async () => {
		// The answer comes from the key (another queen placed it); its exit reached the database meanwhile, and no event will follow.
		const t = setup(async (body) => {
			t.store.workers.save(stored(body.id!));
			return { hiveId: HIVE, id: body.id!, gpus: [], claimId: null };
		});
		t.store.shardRuns.save(leftRun("r-aaaa0002"));
		await t.runs.adopt();
		const v = await until(async () => ((await t.view("r-aaaa0002")).state !== "running" ? t.view("r-aaaa0002") : null), 5000, "the run ends");
		expect(t.asked).toEqual(["r-aaaa0002-0-1"]);
		expect(v.state).toBe("passed");
		expect(v.shards[0]!.attempts).toHaveLength(1);
		expect(v.shards[0]!.attempts[0]).toMatchObject({ hiveId: HIVE, result: "passed" });
	});

	it("a hive that has a worker of that id already (the first queen's placement never recorded): that worker is followed, the run not cancelled", async () => {
		// r-aaaa0003's worker runs on; r-aaaa0013's ended, and its record reached the database.
		const t = setup(async (body) => {
			if (body.id!.startsWith("r-aaaa0013")) t.store.workers.save(stored(body.id!));
			const e = new PlacementError(409, `hive ${HIVE}: id ${body.id} is already in use on this hive`);
			e.inUse = { hiveId: HIVE, id: body.id! };
			throw e;
		});
		t.store.shardRuns.save(leftRun("r-aaaa0003"));
		t.store.shardRuns.save(leftRun("r-aaaa0013"));
		await t.runs.adopt();
		await until(async () => (await t.view("r-aaaa0003")).shards[0]!.attempts[0]!.hiveId === HIVE, 5000, "followed on its hive");
		const running = await t.view("r-aaaa0003");
		expect(running.state).toBe("running");
		expect(running.message).toBeNull();
		expect(running.shards[0]!.attempts).toHaveLength(1);
		const ended = await until(async () => ((await t.view("r-aaaa0013")).state !== "running" ? t.view("r-aaaa0013") : null), 5000, "the run ends");
		expect(ended.state).toBe("passed");
		expect(ended.shards[0]!.attempts).toHaveLength(1);
		expect(t.asked.sort()).toEqual(["r-aaaa0003-0-1", "r-aaaa0013-0-1"]);
	});

	it("a 409 for another id (not this attempt's) still ends the run, saying why", async () => {
		const t = setup(async () => {
			const e = new PlacementError(409, "id w-other is already in use on this hive");
			e.inUse = { hiveId: HIVE, id: "w-other" };
			throw e;
		});
		t.store.shardRuns.save(leftRun("r-aaaa0004"));
		await t.runs.adopt();
		const v = await until(async () => ((await t.view("r-aaaa0004")).state !== "running" ? t.view("r-aaaa0004") : null), 5000, "the run ends");
		expect(v.state).toBe("failed");
		expect(v.shards[0]!.state).toBe("cancelled");
		expect(v.message).toMatch(/could not be placed: id w-other is already in use/);
	});

	it("a placement in doubt (the hive's answer lost) is asked again under the same key until it is answered, not given up", async () => {
		const t = setup(async (body, n) => {
			if (n < 3) {
				const e = new PlacementError(503, `the relay failed; worker ${body.id} may have started: retry with the same idempotencyKey to find out`);
				e.doubt = { hiveId: HIVE, id: body.id!, gpus: [], claimId: null };
				throw e;
			}
			t.store.workers.save(stored(body.id!));
			return { hiveId: HIVE, id: body.id!, gpus: [], claimId: null };
		});
		t.store.shardRuns.save(leftRun("r-aaaa0005"));
		await t.runs.adopt();
		const v = await until(async () => ((await t.view("r-aaaa0005")).state !== "running" ? t.view("r-aaaa0005") : null), 10_000, "the run ends");
		expect(t.asked).toEqual(["r-aaaa0005-0-1", "r-aaaa0005-0-1", "r-aaaa0005-0-1"]);
		expect(v.state).toBe("passed");
	});

	it("a placement that failed on the way (the database timed out) is asked again under the same key, the shard not given up", async () => {
		const t = setup(async (body, n) => {
			if (n < 3) throw new Error("Query read timeout");
			t.store.workers.save(stored(body.id!));
			return { hiveId: HIVE, id: body.id!, gpus: [], claimId: null };
		});
		t.store.shardRuns.save(leftRun("r-aaaa0007"));
		await t.runs.adopt();
		const v = await until(async () => ((await t.view("r-aaaa0007")).state !== "running" ? t.view("r-aaaa0007") : null), 10_000, "the run ends");
		expect(t.asked).toEqual(["r-aaaa0007-0-1", "r-aaaa0007-0-1", "r-aaaa0007-0-1"]);
		expect(v.state).toBe("passed");
		expect(v.message).toBeNull();
	});

	it("a run adopted while it was being stopped (one shard could not be placed, another was being placed) ends, nothing placed again", async () => {
		// The soak (seed 537384): its first queen let it go between the two; the next one put the second back
		// to waiting and, the run being stopped, never placed it nor ended the run.
		const t = setup(async () => {
			throw new Error("not to be placed");
		});
		const run = leftRun("r-aaaa0006");
		run.body = { command: ["true"], shards: 2 };
		run.message = "shard 2/2 could not be placed: Error: Query read timeout";
		run.shards.push({ index: 1, state: "cancelled", attempts: [{ ...newAttempt("r-aaaa0006-1-1"), result: "cancelled" }] });
		t.store.shardRuns.save(run);
		await t.runs.adopt();
		const v = await until(async () => ((await t.view("r-aaaa0006")).state !== "running" ? t.view("r-aaaa0006") : null), 5000, "the run ends");
		expect(v.state).toBe("failed");
		expect(v.shards.map((s) => s.state)).toEqual(["cancelled", "cancelled"]);
		expect(v.message).toMatch(/could not be placed/);
		expect(t.asked).toEqual([]);
	});
});
