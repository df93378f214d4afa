import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import type { QueenEvent } from "@apiary/protocol";
import { EVENT_TYPES } from "@apiary/protocol/event-types";
import { EventSource } from "eventsource";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { onPostgres, queenDb, storedEventIds } from "@apiary/test-support/queen-db";

const QUEEN_BIN = new URL("../../packages/queen/bin/queen.js", import.meta.url).pathname;

/** A real EventSource subscriber that keeps every event it gets. */
function subscribe(url: string, lastEventId?: number) {
	const events: QueenEvent[] = [];
	const es = new EventSource(url, {
		fetch: (input, init) =>
			fetch(input, {
				...init,
				headers: { ...(init?.headers as Record<string, string>), ...(lastEventId !== undefined ? { "last-event-id": String(lastEventId) } : {}) },
			}),
	});
	for (const t of EVENT_TYPES) es.addEventListener(t, (ev) => events.push(JSON.parse(ev.data)));
	return { es, events, find: (type: string, pred: (e: QueenEvent) => boolean = () => true) => events.find((e) => e.type === type && pred(e)) };
}

// The whole path with real daemons: hive processes in v1 cgroups, a queen
// process with its SQLite file, real WebSockets and a real SSE client.
describe("queen and hive end to end", () => {
	const dir = tempDir("fleet");
	const db = join(dir, "queen.db");
	const hiveState = join(dir, "hive");
	const cgroupRoot = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	const subs: EventSource[] = [];
	const hiveApi = (path: string, init?: RequestInit) => json(`${hive.url}${path}`, init);
	const queenApi = (path: string, init?: RequestInit) => json(`${queen.url}${path}`, init);
	const spawnWorker = (body: object) => hiveApi("/v1/workers", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	const bootHive = async () => {
		hive = await startHive({ queen: queen.url, name: "h1", stateDir: hiveState, cgroupRoot });
		await until(async () => (await queenApi("/v1/hives/h1")).body?.state === "ready", 10_000, "h1 ready");
	};

	beforeAll(async () => {
		queen = await startQueen({ db, staleAfter: "1s", evictAfter: "3s" });
		await bootHive();
	});
	afterAll(async () => {
		for (const s of subs) s.close();
		await hive?.stop("SIGKILL");
		await queen?.stop();
		await removeCgroupRoot(cgroupRoot);
		removeDir(dir);
	});

	it("a spawn on a hive reaches an SSE subscriber and queen tail as worker.spawned", async () => {
		const sub = subscribe(`${queen.url}/v1/events`);
		subs.push(sub.es);
		const snap = await until(() => sub.find("snapshot"), 10_000, "snapshot");
		expect((snap.data as { hives: { id: string }[] }).hives.map((h) => h.id)).toEqual(["h1"]);
		const tail = spawn(process.execPath, [QUEEN_BIN, "tail", "--queen", queen.url, "--types", "worker.*", "--coalesce", "2s"], {
			stdio: ["ignore", "pipe", "pipe"],
		});
		let tailOut = "";
		tail.stdout.on("data", (d) => {
			tailOut += d;
		});
		try {
			await until(() => tailOut.includes("snapshot"), 10_000, "tail's snapshot");
			const t0 = Date.now();
			const r = await spawnWorker({ id: "first", command: ["sleep", "60"], labels: { suite: "e2e" } });
			expect(r.status).toBe(201);
			const e = await until(() => sub.find("worker.spawned", (x) => x.workerId === "first"), 10_000, "worker.spawned at the subscriber");
			expect(e.hiveId).toBe("h1");
			expect((e.data as { worker: { labels: object } }).worker.labels).toEqual({ suite: "e2e" });
			expect(Date.now() - t0).toBeLessThan(5000);
			await until(() => /worker\.spawned\s+h1\s+first\s+sleep 60/.test(tailOut), 10_000, "worker.spawned in queen tail");
			expect(tailOut).not.toMatch(/gpu\.updated/); // --types filters; --coalesce holds samples, never a spawn
			// ids strictly increase
			const ids = sub.events.map((x) => x.id);
			expect(ids).toEqual([...ids].sort((a, b) => a - b));
			expect(new Set(ids).size).toBe(ids.length);
		} finally {
			tail.kill();
		}
		const w = await queenApi("/v1/workers/first");
		expect(w.body).toMatchObject({ id: "first", hiveId: "h1", state: "running" });
	});

	it("kill -9 the hive: hive.stale, then hive.lost with its workers evicted and its GPUs no longer free, within --evict-after plus a tick", async () => {
		const sub = subscribe(`${queen.url}/v1/events?types=hive.*,worker.evicted`);
		subs.push(sub.es);
		await until(() => sub.find("snapshot"), 10_000, "snapshot");
		await spawnWorker({ id: "gpu-user", command: ["sleep", "60"], gpus: ["2"] });
		await until(async () => (await queenApi("/v1/workers/gpu-user")).status === 200, 10_000, "gpu-user known");
		const freeBefore = (await queenApi("/v1/gpus?free=true&hive=h1")).body.map((g: { index: number }) => g.index);
		expect(freeBefore).toEqual([3]); // 0 and 1 are busy, 2 is held by gpu-user
		const killedAt = Date.now();
		await hive.stop("SIGKILL");
		const stale = await until(() => sub.find("hive.stale"), 10_000, "hive.stale");
		const lost = await until(() => sub.find("hive.lost"), 10_000, "hive.lost");
		expect(Date.parse(stale.at) - killedAt).toBeLessThan(1000 + 250 + 500);
		expect(Date.parse(lost.at) - killedAt).toBeLessThan(3000 + 250 + 500);
		expect(stale.id).toBeLessThan(lost.id);
		expect((lost.data as { evictedWorkers: string[] }).evictedWorkers.sort()).toEqual(["first", "gpu-user"]);
		expect(
			sub.events
				.filter((e) => e.type === "worker.evicted")
				.map((e) => e.workerId)
				.sort(),
		).toEqual(["first", "gpu-user"]);
		expect((await queenApi("/v1/gpus?free=true")).body).toEqual([]);
		expect((await queenApi("/v1/hives/h1")).body.state).toBe("lost");
		expect((await queenApi("/v1/workers?state=running")).body).toEqual([]);
	});

	it("a restarted hive: hive.restarted, re-adopted workers listed again, ended ones with exit records", async () => {
		const sub = subscribe(`${queen.url}/v1/events`);
		subs.push(sub.es);
		await until(() => sub.find("snapshot"), 10_000, "snapshot");
		// gpu-user ends while no hive watches it.
		const pid = Number(
			execFileSync("cat", [`/sys/fs/cgroup/memory/${cgroupRoot}/workers/gpu-user/cgroup.procs`])
				.toString()
				.trim(),
		);
		process.kill(pid, "SIGKILL");
		await sleep(200);
		await bootHive();
		const restarted = await until(() => sub.find("hive.restarted"), 10_000, "hive.restarted");
		expect(restarted.hiveId).toBe("h1");
		await until(async () => (await queenApi("/v1/workers/first")).body.state === "running", 10_000, "first running again");
		const first = (await queenApi("/v1/workers/first")).body;
		expect(first).toMatchObject({ state: "running", adopted: true });
		const ended = await until(
			async () => {
				const w = (await queenApi("/v1/workers/gpu-user")).body;
				return w.state === "exited" ? w : null;
			},
			10_000,
			"gpu-user's exit record",
		);
		expect(ended.exit).toMatchObject({ exitCode: null, reason: "lost" });
		expect(ended.exits).toHaveLength(1);
		expect((await queenApi("/v1/gpus?free=true&hive=h1")).body.map((g: { index: number }) => g.index)).toEqual([2, 3]);
	});

	it("a worker that exits while the queen is down 10 s: after reconnect the queen has its exit record, once", async () => {
		await spawnWorker({ id: "while-away", command: ["sh", "-c", "sleep 2; exit 7"] });
		await until(async () => (await queenApi("/v1/workers/while-away")).status === 200, 10_000, "known to the queen");
		const port = queen.port;
		await queen.stop();
		const downAt = Date.now();
		await until(async () => (await hiveApi("/v1/workers/while-away")).body.state === "exited", 10_000, "exit on the hive");
		await sleep(Math.max(0, 10_000 - (Date.now() - downAt)));
		queen = await startQueen({ db, port, staleAfter: "1s", evictAfter: "3s" });
		const w = await until(
			async () => {
				const r = (await queenApi("/v1/workers/while-away")).body;
				return r?.state === "exited" ? r : null;
			},
			40_000,
			"the exit record after reconnect",
		);
		expect(w.exit).toMatchObject({ exitCode: 7, reason: "exited" });
		expect(w.exits).toHaveLength(1);
		await sleep(1000); // more heartbeats must not duplicate it
		expect((await queenApi("/v1/workers/while-away")).body.exits).toHaveLength(1);
	}, 90_000);

	it("a queen restarted on the same db has its registry back, and a subscriber resuming with Last-Event-ID gets exactly the missed lifecycle events", async () => {
		const sub = subscribe(`${queen.url}/v1/events`);
		subs.push(sub.es);
		await until(() => sub.find("snapshot"), 10_000, "snapshot");
		await spawnWorker({ id: "before-restart", command: ["sh", "-c", "sleep 0.5"] });
		await until(() => sub.find("worker.exited", (e) => e.workerId === "before-restart"), 10_000, "exit seen");
		sub.es.close();
		const lastSeen = sub.events.at(-1)!.id;
		// Missed while away: more events, and a queen restart in between.
		await spawnWorker({ id: "missed-1", command: ["sh", "-c", "sleep 0.3"] });
		await sleep(800);
		const port = queen.port;
		await queen.stop();
		queen = await startQueen({ db, port, staleAfter: "1s", evictAfter: "3s" });
		const hives = (await queenApi("/v1/hives")).body;
		expect(hives.map((h: { id: string }) => h.id)).toEqual(["h1"]);
		expect((await queenApi("/v1/workers/missed-1")).body.state).toBe("exited"); // from disk
		await until(async () => (await queenApi("/v1/hives/h1")).body.state === "ready", 20_000, "h1 back");
		await spawnWorker({ id: "missed-2", command: ["true"] });
		await until(async () => (await queenApi("/v1/workers/missed-2")).body?.state === "exited", 10_000, "missed-2 recorded");
		const resumed = subscribe(`${queen.url}/v1/events`, lastSeen);
		subs.push(resumed.es);
		const fromDb = async () => storedEventIds(await queenDb(db), lastSeen);
		await until(() => resumed.find("worker.exited", (e) => e.workerId === "missed-2"), 10_000, "replay up to missed-2");
		await sleep(300);
		const got = resumed.events.map((e) => e.id);
		const want = (await fromDb()).filter((id) => id <= got.at(-1)!);
		expect(resumed.find("snapshot")).toBeUndefined(); // a resume replays; it does not start over
		// Exactly the missed durable events: no gap, no duplicate, in order. Stats
		// samples are not durable: only those since the restart (still in the
		// queen's memory) come along, in id order with the rest.
		expect(resumed.events.filter((e) => e.type !== "worker.updated").map((e) => e.id)).toEqual(want);
		// In order. On SQLite every event has an id of its own; with the queen on PostgreSQL
		// (several queens) a stats sample carries the id of the lifecycle event before it.
		expect(got).toEqual([...got].sort((a, b) => a - b));
		if (!onPostgres()) expect(got).toEqual([...new Set(got)]);
		expect(want[0]).toBeGreaterThan(lastSeen);
		expect(resumed.events.map((e) => `${e.type}:${e.workerId}`)).toEqual(
			expect.arrayContaining(["worker.spawned:missed-1", "worker.exited:missed-1", "worker.spawned:missed-2"]),
		);
	}, 60_000);
});
