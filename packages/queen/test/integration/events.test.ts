import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { EventType } from "@apiary/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { EventLog, eventJson } from "../../src/events.ts";
import { SqliteStore as Store } from "../../src/store/sqlite.ts";

// The event log on a real SQLite file: what is durable, what lives in the
// in-memory window, and ids across restarts (clean and not).

const dirs: string[] = [];
afterEach(() => {
	for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dbPath(): string {
	const d = mkdtempSync(join(tmpdir(), "apiary-test-events-"));
	dirs.push(d);
	return join(d, "q.db");
}

/** One "transaction" the way the registry runs it: append, persist inside, flush after commit. */
function commit(store: Store, log: EventLog, events: [EventType, string][]): number[] {
	const ids = store.tx(() => {
		const out = events.map(([type, w]) => log.append(type, { w }, "h", w).id);
		log.persist();
		return out;
	});
	log.flush();
	return ids;
}

const storedIds = (path: string) => {
	const d = new DatabaseSync(path, { readOnly: true });
	try {
		return (d.prepare("SELECT id, type FROM events ORDER BY id").all() as { id: number; type: string }[]).map((r) => `${r.id}:${r.type}`);
	} finally {
		d.close();
	}
};

describe("event log", () => {
	it("writes lifecycle events to SQLite and keeps them in the window; worker.updated goes to subscribers only (the registry keeps the latest)", async () => {
		const path = dbPath();
		const store = new Store(path);
		const log = new EventLog(store);
		commit(store, log, [["worker.spawned", "a"]]);
		commit(store, log, [
			["worker.updated", "a"],
			["worker.updated", "b"],
		]);
		commit(store, log, [
			["worker.updated", "a"],
			["worker.exited", "a"],
		]);
		expect(storedIds(path)).toEqual(["1:worker.spawned", "5:worker.exited"]);
		expect((await log.since(0)).map((e) => `${e.id}:${e.type}`)).toEqual(["1:worker.spawned", "5:worker.exited"]);
		expect((await log.since(3)).map((e) => e.id)).toEqual([5]);
		expect(await log.since(0, 10, 4)).toEqual([expect.objectContaining({ id: 1 })]); // up to the head a resume was taken at
		expect(await log.since(5)).toEqual([]);
		// What is stored is the same text subscribers are sent.
		expect(JSON.parse(eventJson((await log.since(4))[0]!))).toMatchObject({ id: 5, type: "worker.exited", hiveId: "h", workerId: "a", data: { w: "a" } });
		store.close();
	});

	it("a resume from before the window gets the durable events from the database, then the window, with no duplicate", async () => {
		const store = new Store(dbPath());
		const log = new EventLog(store, { recent: 4 });
		for (let i = 0; i < 10; i++) {
			commit(store, log, [
				["worker.spawned", `w${i}`],
				["worker.updated", `w${i}`],
			]);
		}
		// Ids 1..20; spawned are odd, and the window holds the last 4 to 5 of them (samples take no room in it).
		const got = await log.since(0);
		const ids = got.map((e) => e.id);
		expect(ids).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
		expect(log.oldestRetained()).toBe(1); // the database still has them all
		expect((await log.since(0, 2)).length).toBeGreaterThanOrEqual(2); // limit is honoured roughly (whole batches)
		expect((await log.since(12, 100, 17)).map((e) => e.id)).toEqual([13, 15, 17]);
		store.close();
	});

	it("ids continue exactly after a clean stop, and are never reused after a crash although samples are never written", async () => {
		const path = dbPath();
		let store = new Store(path);
		let log = new EventLog(store);
		commit(store, log, [["hive.joined", "x"]]);
		commit(store, log, [["worker.updated", "a"]]);
		expect(log.lastId).toBe(2);
		log.close();
		store.close();
		store = new Store(path);
		log = new EventLog(store);
		expect(log.lastId).toBe(2); // clean stop: no gap
		expect(commit(store, log, [["worker.updated", "a"]])).toEqual([3]);
		// A crash: no close(). Id 3 was sent to subscribers but never stored as an event.
		store.close();
		store = new Store(path);
		log = new EventLog(store);
		const [next] = commit(store, log, [["worker.spawned", "b"]]);
		expect(next).toBeGreaterThan(3);
		expect((await log.since(2)).map((e) => e.id)).toEqual([next]);
		store.close();
	});

	it("a rolled-back transaction hands its ids out again and publishes nothing", async () => {
		const store = new Store(dbPath());
		const log = new EventLog(store);
		const heard: number[] = [];
		log.subscribe((e) => heard.push(e.id));
		expect(() =>
			store.tx(() => {
				log.append("worker.spawned", {}, "h", "a");
				log.persist();
				throw new Error("boom");
			}),
		).toThrow("boom");
		log.discard();
		expect(commit(store, log, [["worker.spawned", "a"]])).toEqual([1]);
		expect(heard).toEqual([1]);
		expect((await log.since(0)).map((e) => e.id)).toEqual([1]);
		store.close();
	});
});
