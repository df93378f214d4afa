import { type HelloMessage, packStats, type QueenEvent, type WorkerStats } from "@apiary/protocol";
import { describe, expect, it } from "vitest";
import { EventLog } from "../../src/events.ts";
import { globMatch, matches, parseTypes } from "../../src/filter.ts";
import { Registry } from "../../src/registry.ts";
import { SqliteStore as Store } from "../../src/store/sqlite.ts";
import { endedWorker as ended, gpu, helloMessage, worker } from "@apiary/test-support/fake-hive";

const sample: WorkerStats = {
	sampledAt: 0,
	uptimeMs: 1,
	cpu: { usageNs: 1, percent: 1, periods: null, throttledPeriods: null, throttledNs: null },
	memory: { currentBytes: 1, peakBytes: null, workingSetBytes: 1, anonBytes: 1, fileBytes: 0, limitBytes: null, oomKills: 0 },
	io: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0, readBytesPerSec: null, writeBytesPerSec: null, readOpsPerSec: null, writeOpsPerSec: null },
	pids: { current: 1, limit: null },
	pressure: { cpu: null, memory: null, io: null },
	gpuMemoryMiB: null,
};

// The registry on an in-memory SQLite with a hand-driven clock.
function setup(more: { livenessEveryMs?: number; busy?: () => number } = {}) {
	let mono = 0;
	const clock = { now: () => mono, wall: () => 1_800_000_000_000 + mono };
	const store = new Store(":memory:");
	const events = new EventLog(store);
	const seen: QueenEvent[] = [];
	events.subscribe((e) => seen.push(e));
	const reg = new Registry(store, events, { staleAfterMs: 3000, evictAfterMs: 90_000, busyMemoryMiB: 1024, clock, ...more });
	const hello = (id: string, instanceId = `i-${id}`): HelloMessage => ({ ...helloMessage(id, [gpu(0), gpu(1)]), instanceId });
	const beat = (id: string, workers = [worker("w1")], seq = 1) =>
		reg.heartbeat(
			id,
			{
				type: "heartbeat",
				seq,
				snapshot: {
					hiveId: id,
					instanceId: `i-${id}`,
					seq,
					takenAt: "",
					tickMs: 0,
					driver: hello(id).driver,
					workers,
					gpu: { state: "ok", message: null, ageMs: 0, gpus: [gpu(0), gpu(1)] },
				},
			},
			seq === 1,
		);
	const changes = () => (store.db.prepare("SELECT total_changes() AS n").get() as { n: number }).n;
	return { reg, store, changes, seen, hello, beat, advance: (ms: number) => (mono += ms), types: () => seen.map((e) => e.type) };
}

describe("liveness on the queen's clock", () => {
	it("ready → stale after --stale-after → lost after --evict-after, evicting workers and taking GPUs out of the free pool", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("w1", { gpus: ["0"] })]);
		expect(t.reg.listGpus({ free: true }).map((g) => g.index)).toEqual([1]);
		t.advance(2999);
		t.reg.checkLiveness();
		expect(t.reg.getHive("h")!.state).toBe("ready");
		t.advance(2);
		t.reg.checkLiveness();
		expect(t.reg.getHive("h")!.state).toBe("stale");
		expect(t.reg.listGpus({ free: true })).toEqual([]); // a stale hive's GPUs are not offered
		t.advance(87_000);
		t.reg.checkLiveness();
		expect(t.reg.getHive("h")!.state).toBe("lost");
		// gpu.updated follows the spawn and the eviction: GPU 0 is held, then not.
		expect(t.types()).toEqual([
			"hive.joined",
			"gpu.updated",
			"gpu.updated",
			"worker.spawned",
			"gpu.updated",
			"hive.stale",
			"worker.evicted",
			"gpu.updated",
			"hive.lost",
		]);
		expect(t.reg.listWorkers({ state: "running" })).toEqual([]);
		expect(t.reg.getWorker("w1")!.state).toBe("evicted");
		// A heartbeat brings it back.
		t.beat("h", [worker("w1")], 2);
		expect(t.reg.getHive("h")!.state).toBe("ready");
	});

	it("a new instanceId is a restart: hive.restarted, and running workers missing from its first snapshot are evicted", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("a"), worker("b")]);
		t.reg.hello(t.hello("h", "i-new"));
		t.beat("h", [worker("a")]);
		expect(t.types()).toContain("hive.restarted");
		expect(t.reg.getWorker("b")!.state).toBe("evicted");
		expect(t.reg.getWorker("a")!.state).toBe("running");
	});

	it("an exit record is stored once however often it is sent", async () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		const exited = ended("w1", 1000, []);
		t.beat("h", [worker("w1")]);
		t.beat("h", [exited], 2);
		t.beat("h", [exited], 3);
		t.reg.workerEvent("h", { type: "event", seq: 4, event: "worker.exited", worker: exited });
		expect(t.types().filter((x) => x === "worker.exited")).toHaveLength(1);
		expect(await t.reg.exitsOf("h", "w1")).toHaveLength(1);
	});

	it("worker.updated only when a new sample arrives", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		const s = { sampledAt: 1 } as never;
		t.beat("h", [worker("w1")]);
		t.beat("h", [worker("w1", { stats: s })], 2);
		t.beat("h", [worker("w1", { stats: s })], 3);
		expect(t.types().filter((x) => x === "worker.updated")).toHaveLength(1);
	});

	it("a heartbeat that brings only new samples writes nothing to SQLite; last-seen is rewritten every 10 s", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("w1")]);
		const tick = (seq: number, at: number) => ({
			id: "w1",
			state: "running" as const,
			startedAt: worker("w1").startedAt,
			pid: 1000,
			s: packStats({ ...sample, sampledAt: at }),
		});
		const before = t.changes();
		const lastSeen = () => (t.store.db.prepare("SELECT last_seen_at AS at FROM hives WHERE id = 'h'").get() as { at: string }).at;
		const stored = lastSeen();
		t.advance(1000);
		t.beat("h", [tick(2, 2)] as never, 2);
		t.advance(1000);
		t.beat("h", [tick(3, 3)] as never, 3);
		expect(t.types().filter((x) => x === "worker.updated")).toHaveLength(2); // published
		expect(t.reg.getWorker("w1")!.stats!.sampledAt).toBe(3); // and in the registry
		expect(t.changes()).toBe(before); // but not one row written
		t.advance(8000);
		t.beat("h", [tick(4, 4)] as never, 4);
		expect(t.changes()).toBe(before + 1);
		expect(lastSeen()).not.toBe(stored);
		expect(t.store.db.prepare("SELECT COUNT(*) AS n FROM events WHERE type = 'worker.updated'").get()).toEqual({ n: 0 });
	});

	it("a claim expires on the monotonic clock", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", []);
		const c = t.reg.claim({ count: 2, ttlSeconds: 10, holder: "ci" });
		expect(t.reg.listGpus({ free: true })).toEqual([]);
		t.advance(9_999);
		t.reg.checkLiveness();
		expect(t.reg.listClaims().map((x) => x.id)).toEqual([c.id]);
		t.advance(1);
		t.reg.checkLiveness();
		expect(t.reg.listClaims()).toEqual([]);
		expect(t.seen.at(-1)).toMatchObject({ type: "claim.released", data: { reason: "expired" } });
	});
});

describe("worker queries", () => {
	it("filter by hive, state and label", () => {
		const t = setup();
		t.reg.hello(t.hello("a"));
		t.reg.hello(t.hello("b"));
		t.beat("a", [worker("x", { labels: { suite: "e2e" } }), worker("y", { labels: { suite: "unit" } })]);
		t.beat("b", [worker("x", { labels: { suite: "e2e" } })]);
		expect(t.reg.listWorkers({ label: ["suite", "e2e"] }).map((w) => `${w.hiveId}/${w.id}`)).toEqual(["a/x", "b/x"]);
		expect(t.reg.listWorkers({ hive: "a", state: "running" }).map((w) => w.id)).toEqual(["x", "y"]);
		expect(t.reg.listWorkers({ state: "exited" })).toEqual([]);
		expect(t.reg.getWorker("x", "b")!.hiveId).toBe("b");
	});

	it("by id alone (kept in an index, not a scan): every hive reporting it, a running one first, and none once each record is gone", () => {
		const t = setup();
		for (const h of ["a", "b", "c"]) t.reg.hello(t.hello(h));
		t.beat("b", [worker("x"), worker("y")]);
		t.beat("c", [ended("x")]);
		expect(t.reg.hivesOfWorker("x")).toEqual(["b", "c"]);
		expect(() => t.reg.findWorker("x")).toThrow(/worker id x is reported by 2 hives \(b, c\)/);
		// A running record is preferred to an ended one, whichever hive sorts first.
		expect(t.reg.getWorker("x")).toMatchObject({ hiveId: "b", state: "running" });
		t.beat("b", [ended("x"), worker("y")], 2);
		expect(t.reg.getWorker("x")).toMatchObject({ hiveId: "b", state: "exited" });
		t.beat("a", [worker("x")]);
		expect(t.reg.getWorker("x")).toMatchObject({ hiveId: "a", state: "running" });
		expect(t.reg.hivesOfWorker("x")).toEqual(["a", "b", "c"]);
		// Exited records pruned from memory leave the index with them.
		expect(t.reg.pruneExited(0, 0)).toBe(2);
		expect(t.reg.hivesOfWorker("x")).toEqual(["a"]);
		// Another queen's rows for a: its workers as that queen wrote them (none), so x is nowhere here.
		t.reg.applyRemote(
			{
				hives: t.store.hives
					.all()
					.filter((r) => r.id === "a")
					.map((r) => ({ ...r, owner: "other" })),
				workers: [],
				gpus: [],
			},
			[],
			"me",
		);
		expect(t.reg.hivesOfWorker("x")).toEqual([]);
		expect(t.reg.getWorker("x")).toBeNull();
		expect(t.reg.getWorker("y")).toMatchObject({ hiveId: "b", state: "running" });
	});
});

describe("event filters", () => {
	const ev = (type: QueenEvent["type"], hiveId: string | null = "h1", workerId: string | null = null) => ({
		id: 1,
		type,
		at: "",
		hiveId,
		workerId,
		data: null,
	});
	it("types with * wildcards, hive and worker", () => {
		const f = { types: parseTypes("worker.*,hive.lost"), hive: null, worker: null };
		expect(matches(f, ev("worker.exited"))).toBe(true);
		expect(matches(f, ev("hive.lost"))).toBe(true);
		expect(matches(f, ev("hive.stale"))).toBe(false);
		expect(matches(f, ev("gpu.updated"))).toBe(false);
		expect(matches({ types: null, hive: "h2", worker: null }, ev("worker.exited"))).toBe(false);
		expect(matches({ types: null, hive: null, worker: "w" }, ev("worker.exited", "h1", "w"))).toBe(true);
		expect(matches({ types: parseTypes("hive.*"), hive: "x", worker: null }, ev("snapshot", null))).toBe(true); // stream events always pass
	});
	it("a dot is a dot, not any character", () => {
		expect(matches({ types: parseTypes("worker.exited"), hive: null, worker: null }, ev("worker.exited"))).toBe(true);
		expect(globMatch("worker.exited", "workerXexited")).toBe(false);
	});
	it("patterns are resolved once against the known types, in linear time, bounded in count; a typo is a 400", () => {
		expect([...parseTypes("*.*ed")!].sort()).toEqual(
			[
				"hive.joined",
				"hive.restarted",
				"hive.cordoned",
				"hive.drained",
				"hive.uncordoned",
				"run.started",
				"run.finished",
				"worker.evicted",
				"worker.exited",
				"worker.spawned",
				"worker.updated",
				"gpu.updated",
				"claim.created",
				"claim.released",
				"placement.failed",
				"stream.lagged",
			].sort(),
		);
		// The pattern that froze the queen (16 stars and a letter no type ends with) is matched, not
		// backtracked: the fault tier times /healthz while 20 such filters are served.
		expect(globMatch(`${"*".repeat(1000)}z`, "worker.updated.worker.updated.worker.updated")).toBe(false);
		expect(globMatch("**w*r*k*e*r*.*d", "worker.updated")).toBe(true);
		expect(() => parseTypes("****************z")).toThrow(/matches no event type/);
		expect(() => parseTypes("wokrer.*")).toThrow(/querystring.types: "wokrer.\*" matches no event type/);
		expect(() => parseTypes(Array(33).fill("hive.*").join(","))).toThrow(/at most 32 patterns/);
	});
});

describe("a commit the store refuses", () => {
	it("undoes every memory change it carried: workers, the hive, its GPUs, claims, and no event goes out", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("w1", { gpus: ["0"] })]);
		const claim = t.reg.claim({ count: 1, ttlSeconds: 60, holder: "x" });
		const before = JSON.stringify({
			hives: t.reg.listHives(),
			workers: t.reg.listWorkers({ state: "all" }),
			gpus: t.reg.listGpus(),
			claims: t.reg.listClaims(),
		});
		const seen = t.seen.length;
		// node:sqlite's own error for a full disk, at the commit.
		const db = t.store.sql.db;
		const exec = db.exec.bind(db);
		db.exec = (sql: string) => {
			if (sql === "COMMIT") {
				exec("ROLLBACK");
				throw Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13 });
			}
			return exec(sql);
		};
		// The hive reports w1 ended and one GPU gone; a claim is released; the hive is later lost.
		const exited = ended("w1");
		expect(() =>
			t.reg.heartbeat(
				"h",
				{
					type: "heartbeat",
					seq: 2,
					snapshot: {
						hiveId: "h",
						instanceId: "i-h",
						seq: 2,
						takenAt: "",
						tickMs: 0,
						driver: t.hello("h").driver,
						workers: [exited],
						gpu: { state: "ok", message: null, ageMs: 0, gpus: [gpu(0)] },
					},
				},
				false,
			),
		).toThrow(/the queen's store failed: database or disk is full/);
		expect(() => t.reg.release(claim.id)).toThrow(expect.objectContaining({ statusCode: 507 }));
		// Lost past --evict-after: that transition (the hive lost, w1 evicted) is refused and undone too.
		t.advance(100_000);
		expect(() => t.reg.checkLiveness()).toThrow(/database or disk is full/);
		t.advance(-100_000);
		expect(JSON.stringify({ hives: t.reg.listHives(), workers: t.reg.listWorkers({ state: "all" }), gpus: t.reg.listGpus(), claims: t.reg.listClaims() })).toBe(
			before,
		);
		expect(t.seen.length).toBe(seen);
		expect(t.reg.storeFailure).toMatchObject({ status: 507, error: "database or disk is full" });
		// The id index too: w1 is still found by id alone, running.
		expect(t.reg.getWorker("w1")).toMatchObject({ hiveId: "h", state: "running" });
	});
});

describe("several queens: another queen's commits read back", () => {
	it("rows read while a connected hive's exit was applied do not bring the worker back to running; a cordon set elsewhere is taken", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("w1", { gpus: ["0"] })]);
		// Another queen's event named h: its rows are read back now (w1 running, the GPU held) …
		const rows = {
			hives: t.store.hives.all().map((r) => ({ ...r, owner: "me", drain: { state: "cordoned", reason: "elsewhere" } as never })),
			workers: t.store.workers.all(),
			gpus: t.store.gpus.all(),
		};
		// … and before they arrive the hive, connected here, says w1 ended.
		t.beat("h", [ended("w1")], 2);
		expect(t.reg.getWorker("w1", "h")!.state).toBe("exited");
		t.reg.applyRemote(rows, [], "me");
		expect(t.reg.getWorker("w1", "h")!.state).toBe("exited");
		expect(t.reg.getHive("h")!.drain).toMatchObject({ state: "cordoned", reason: "elsewhere" });
		// A hive another queen serves: its rows are taken as read.
		t.reg.applyRemote({ ...rows, hives: rows.hives.map((r) => ({ ...r, owner: "other" })) }, [], "me");
		expect(t.reg.getWorker("w1", "h")!.state).toBe("running");
	});
});

describe("several queens: workers read back one by one", () => {
	it("a named worker's row replaces its record, one with no row goes, the others stay; a hive connected here is first-hand", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("w1", { gpus: ["0"] }), worker("w2"), worker("w3")]);
		const rows = { hives: t.store.hives.all().map((r) => ({ ...r, owner: "other" })), workers: t.store.workers.all(), gpus: t.store.gpus.all() };
		t.reg.applyRemote(rows, [], "me");
		t.reg.disconnected("h");
		const w2 = t.reg.getWorker("w2", "h")!;
		// Its queen says w1 exited (GPU 0 freed) and w2 went (no row); w3 is not named, so not read.
		const w1Exited = { ...t.store.workers.all().find((w) => w.id === "w1")!, state: "exited" as const };
		const some = { hives: new Map([["h", new Set(["w1", "w2"])]]), workers: [w1Exited] };
		t.reg.applyRemote({ hives: [], workers: [], gpus: [] }, [], "me", some);
		expect(t.reg.getWorker("w1", "h")!.state).toBe("exited");
		expect(t.reg.listGpus({ free: true, hive: "h" }).map((g) => g.index)).toContain(0);
		expect(t.reg.getWorker("w2", "h")).toBeNull();
		expect(w2.state).toBe("running");
		expect(t.reg.getWorker("w3", "h")!.state).toBe("running");
		// Connected here again: its workers are first-hand, a read-back leaves them be.
		t.reg.hello(t.hello("h"));
		t.beat("h", [worker("w1"), worker("w3")], 1);
		t.reg.applyRemote({ hives: [], workers: [], gpus: [] }, [], "me", { hives: new Map([["h", new Set(["w1"])]]), workers: [] });
		expect(t.reg.getWorker("w1", "h")!.state).toBe("running");
	});
});

describe("several queens: the sweep", () => {
	it("leaves a hive whose queen is alive to that queen, however old its row; one whose queen is gone is unknown, then lost", () => {
		const t = setup();
		t.reg.hello(t.hello("h"));
		t.beat("h");
		const rows = { hives: t.store.hives.all().map((r) => ({ ...r, owner: "other" })), workers: t.store.workers.all(), gpus: t.store.gpus.all() };
		t.reg.applyRemote(rows, [], "me");
		t.reg.disconnected("h");
		const before = t.seen.length;
		// Its row unrenewed for a minute (its queen told it a long interval, or is behind on its intake): that queen judges it.
		t.reg.sweep([{ id: "h", state: "ready", ownerAlive: true, ageMs: 60_000 }]);
		expect(t.reg.getHive("h")!.state).toBe("ready");
		expect(t.seen.length).toBe(before);
		// Its queen gone: unknown while it fails over, lost past evict-after.
		t.reg.sweep([{ id: "h", state: "ready", ownerAlive: false, ageMs: 60_000 }]);
		expect(t.reg.getHive("h")!.state).toBe("unknown");
		t.reg.sweep([{ id: "h", state: "unknown", ownerAlive: false, ageMs: 200_000 }]);
		expect(t.reg.getHive("h")!.state).toBe("lost");
	});
});

describe("the queen's own slowness", () => {
	/** A hive heard once, then a liveness check 10 s after the one before. */
	const stalled = (more: { livenessEveryMs?: number }) => {
		const t = setup(more);
		t.reg.hello(t.hello("h"));
		t.beat("h");
		t.reg.checkLiveness();
		t.advance(10_000);
		t.reg.checkLiveness();
		return t;
	};

	it("a stall of the queen (its check 10 s late) is not a hive's silence; silence after it still is", () => {
		// The queen heard no one for 10 s: its event loop was blocked, the hive may have spoken all along.
		const t = stalled({ livenessEveryMs: 500 });
		expect(t.reg.getHive("h")!.state).toBe("ready");
		// Then, checked on time, 3 s of real silence is stale as ever.
		for (let i = 0; i < 7; i++) {
			t.advance(500);
			t.reg.checkLiveness();
		}
		expect(t.reg.getHive("h")!.state).toBe("stale");
	});

	it("without the check's period (a queen that cannot tell its stalls) silence counts as before", () => {
		expect(stalled({}).reg.getHive("h")!.state).toBe("stale");
	});

	it("while the queen is saturated (its loop ≥ 90 % busy: a backlog unread) a connected hive does not age; after, it does", () => {
		// Checks on time every 500 ms, but the loop busy all the while: what the hive sent may sit unread.
		let busy = 0.97;
		const t = setup({ livenessEveryMs: 500, busy: () => busy });
		t.reg.hello(t.hello("h"));
		t.beat("h");
		t.reg.hello(t.hello("gone"));
		t.beat("gone");
		t.reg.disconnected("gone");
		for (let i = 0; i < 20; i++) {
			t.advance(500);
			t.reg.checkLiveness();
		}
		// 10 s without a heartbeat read: the connected hive is ready; the one whose socket closed is not excused.
		expect(t.reg.getHive("h")!.state).toBe("ready");
		expect(t.reg.getHive("gone")!.state).not.toBe("ready");
		// The load falls: 3 s more of silence is stale as ever.
		busy = 0.3;
		for (let i = 0; i < 7; i++) {
			t.advance(500);
			t.reg.checkLiveness();
		}
		expect(t.reg.getHive("h")!.state).toBe("stale");
	});

	it("a busy loop under the threshold excuses nothing", () => {
		const t = setup({ livenessEveryMs: 500, busy: () => 0.85 });
		t.reg.hello(t.hello("h"));
		t.beat("h");
		for (let i = 0; i < 8; i++) {
			t.advance(500);
			t.reg.checkLiveness();
		}
		expect(t.reg.getHive("h")!.state).toBe("stale");
	});
});
