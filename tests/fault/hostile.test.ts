import { createHash } from "node:crypto";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { Claim, QueenEvent, RecommendationsAnswer, WorkerInfo } from "@apiary/protocol";
import { exitedWorker, FakeHive, gpu, worker } from "@apiary/test-support/fake-hive";
import {
	type Daemon,
	holdPlacement,
	json,
	newCgroupRoot,
	removeCgroupRoot,
	removeDir,
	runCli,
	startHive,
	startQueen,
	tempDir,
} from "@apiary/test-support/procs";
import { createDriver, detect } from "@apiary/hive";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The second hardening pass (issue #26): each finding of a probe with hostile
// requests and a hive that lies, reproduced against a real queen.

const post = (url: string, body: unknown) => json(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** A fake hive that starts what the queen asks (reply 201, then worker.spawned), and can end it. */
function obliging(h: FakeHive) {
	let seq = 10_000;
	const running = new Map<string, WorkerInfo>();
	h.ws.on("message", (d) => {
		const m = JSON.parse(d.toString());
		if (m.type !== "command" || m.op !== "spawn") return;
		const w = worker(m.body.id, { gpus: m.body.gpus ?? [], command: m.body.command });
		running.set(w.id, w);
		h.send({ type: "reply", id: m.id, status: 201, body: w });
		h.send({ type: "event", seq: ++seq, event: "worker.spawned", worker: w });
	});
	return {
		end(id: string) {
			const w = running.get(id)!;
			const exited = {
				...w,
				state: "exited",
				exit: exitedWorker(id, { startedAt: Date.now() - 1000, durationMs: 1000, peakBytes: 1, cores: 0.1, profile: null, labels: {}, limits: w.limits }).exit,
			};
			h.send({ type: "event", seq: ++seq, event: "worker.exited", worker: exited });
		},
	};
}

async function joined(queen: Daemon, id: string, o: { gpus?: number; workers?: WorkerInfo[]; instanceId?: string } = {}) {
	const h = new FakeHive(queen.url, id, { gpus: Array.from({ length: o.gpus ?? 0 }, (_, i) => gpu(i)), instanceId: o.instanceId });
	await h.opened();
	h.hello();
	h.heartbeat(o.workers ?? []);
	await until(async () => (await json(`${queen.url}/v1/hives/${id}`)).body?.state === "ready", 10_000, `${id} ready`);
	return h;
}

/** The lifecycle events after `since`, replayed from the log until quiet. */
async function eventsSince(url: string, since: number, types: string): Promise<QueenEvent[]> {
	const ac = new AbortController();
	const res = await fetch(`${url}/v1/events?since=${since}&types=${types}`, { signal: ac.signal });
	const reader = res.body!.getReader();
	let text = "";
	for (;;) {
		const r = await Promise.race([reader.read(), sleep(600).then(() => null)]);
		if (!r || r.done) break;
		text += Buffer.from(r.value).toString();
	}
	ac.abort();
	return [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as QueenEvent);
}

describe("hostile clients and lying hives (second pass)", () => {
	const dir = tempDir("fault-hostile");
	let queen: Daemon;
	const hives: FakeHive[] = [];
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db"), sqlite: true, staleAfter: "2s", evictAfter: "30s" });
	});
	afterAll(async () => {
		for (const h of hives) h.close();
		await queen.stop();
		removeDir(dir);
	});

	it("a claim's GPU goes to one live worker at a time, and only to its holder", async () => {
		const h = await joined(queen, "claimer", { gpus: 2 });
		hives.push(h);
		const hive = obliging(h);
		const c = await post(`${queen.url}/v1/claims`, { count: 1, ttlSeconds: 600, holder: "alice" });
		expect(c.status).toBe(201);
		const claimId = (c.body as Claim).id;
		const first = await post(`${queen.url}/v1/workers`, { id: "c1", command: ["true"], claimId, holder: "alice" });
		expect(first.status).toBe(201);
		// The probe: a second placement on the same claim got the same GPU (201 twice).
		const second = await post(`${queen.url}/v1/workers`, { id: "c2", command: ["true"], claimId, holder: "alice" });
		expect(second.status).toBe(409);
		expect(second.body.message).toMatch(/in use by worker c1 on hive claimer \(one live worker per claim\)/);
		const bob = await post(`${queen.url}/v1/workers`, { id: "c3", command: ["true"], claimId, holder: "bob" });
		expect(bob.status).toBe(403);
		expect(bob.body.message).toMatch(/held by another holder/);
		expect((await post(`${queen.url}/v1/workers`, { id: "c4", command: ["true"], claimId })).status).toBe(400);
		// Once its worker has ended, the claim is its holder's to use again.
		hive.end("c1");
		await until(async () => (await json(`${queen.url}/v1/workers/c1`)).body?.state === "exited", 10_000, "c1 exited");
		expect((await post(`${queen.url}/v1/workers`, { id: "c5", command: ["true"], claimId, holder: "alice" })).status).toBe(201);
	});

	it("an idempotency key reused with another body is a 422 naming the key; the same body in another field order is the same request", async () => {
		const h = await joined(queen, "keyed");
		hives.push(h);
		obliging(h);
		const a = await post(`${queen.url}/v1/workers`, { command: ["echo", "first"], hive: "keyed", idempotencyKey: "k-42" });
		expect(a.status).toBe(201);
		const same = await post(`${queen.url}/v1/workers`, { idempotencyKey: "k-42", hive: "keyed", command: ["echo", "first"] });
		expect(same.body).toEqual(a.body);
		const other = await post(`${queen.url}/v1/workers`, { command: ["rm", "-rf", "/second"], hive: "keyed", idempotencyKey: "k-42" });
		expect(other.status).toBe(422);
		expect(other.body.message).toMatch(/idempotencyKey "k-42" was used for a different request/);
		expect(h.commands.filter((m) => m.op === "spawn")).toHaveLength(1);
	});

	it("a worker id two hives report is (hive, id): an unqualified lookup, stop or logs is a 409 naming both", async () => {
		const legit = await joined(queen, "zz-legit", { workers: [worker("shard-7")] });
		const evil = await joined(queen, "aa-evil", { workers: [worker("shard-7")] });
		hives.push(legit, evil);
		for (const [method, path] of [
			["GET", "/v1/workers/shard-7"],
			["GET", "/v1/workers/shard-7/logs"],
			["DELETE", "/v1/workers/shard-7"],
		] as const) {
			const r = await json(`${queen.url}${path}`, { method });
			expect(r.status, `${method} ${path}`).toBe(409);
			expect(r.body.message).toMatch(/worker id shard-7 is reported by 2 hives \(aa-evil, zz-legit\): name one with \?hive=/);
		}
		expect(legit.commands).toEqual([]);
		expect(evil.commands).toEqual([]);
		expect((await json(`${queen.url}/v1/workers/shard-7?hive=zz-legit`)).body.hiveId).toBe("zz-legit");
	});

	it("an invalid Last-Event-ID is a 400 like an invalid since, never a silent fresh start", async () => {
		for (const bad of ["-1", "abc", "1e3", "12345678901234567890"]) {
			const r = await fetch(`${queen.url}/v1/events`, { headers: { "last-event-id": bad } });
			expect(r.status, bad).toBe(400);
			expect(((await r.json()) as { message: string }).message).toMatch(/last-event-id/);
		}
	});

	it("a hive restarted without its GPUs takes them out of the pool and the claimable set, and the event names the claim on one", async () => {
		const h = await joined(queen, "ghost", { gpus: 8 });
		const c = await post(`${queen.url}/v1/claims`, { count: 1, ttlSeconds: 600, holder: "ghost-buster" });
		expect(c.status).toBe(201);
		const claimed = (c.body as Claim).gpus.find((g) => g.hiveId === "ghost");
		const since = (await json(`${queen.url}/healthz`)).body.lastEventId as number;
		h.close();
		// The same hive, restarted with nvidia-smi gone: no GPUs in its snapshot.
		const again = await joined(queen, "ghost", { instanceId: "ghost-2" });
		hives.push(again);
		await until(async () => (await json<unknown[]>(`${queen.url}/v1/gpus?hive=ghost`)).body.length === 0, 10_000, "its GPUs gone");
		const claim = await post(`${queen.url}/v1/claims`, { count: 4, sameHive: true, ttlSeconds: 60, holder: "x" });
		expect(claim.status).toBe(409);
		const gone = (await eventsSince(queen.url, since, "gpu.updated")).filter((e) => (e.data as { gone?: boolean }).gone);
		expect(gone.map((e) => (e.data as { gpu: { uuid: string } }).gpu.uuid).sort()).toEqual(Array.from({ length: 8 }, (_, i) => gpu(i).uuid).sort());
		if (claimed)
			expect(gone.find((e) => (e.data as { gpu: { uuid: string } }).gpu.uuid === claimed.uuid)!.data).toMatchObject({ claimId: (c.body as Claim).id });
	});

	it("absurd usage in exit records is dropped where it enters: recommendations answer for every group, before and after a restart, and bad rows already stored are ignored", async () => {
		const h = await joined(queen, "liar");
		hives.push(h);
		const limits = { cpu: 1, memoryBytes: 512 << 20, pids: null, timeoutMs: 600_000 };
		const base = (i: number, suite: string) =>
			exitedWorker(`r-${suite}-${i}`, {
				startedAt: Date.now() - 60_000,
				durationMs: 30_000,
				peakBytes: 100 << 20,
				cores: 0.5,
				profile: "fast_feedback",
				labels: { suite },
				limits,
			});
		const runs: WorkerInfo[] = [];
		for (let i = 0; i < 25; i++) {
			const w = base(i, "bad");
			w.exit!.durationMs = i % 2 ? 1e200 : -5;
			w.exit!.usage!.memory.peakWorkingSetBytes = i % 3 ? 1e200 : -1e9;
			w.exit!.usage!.cpu.avgCores = 1.5e308;
			runs.push(w);
			runs.push(base(i, "good"));
		}
		h.heartbeat(runs);
		const check = async (runsEach: number | null) => {
			const r = await json<RecommendationsAnswer>(`${queen.url}/v1/recommendations`);
			expect(r.status).toBe(200);
			const groups = Object.fromEntries(r.body.groups.map((g) => [g.labels.suite, g]));
			expect(groups.good?.runs).toBeGreaterThanOrEqual(25);
			expect(groups.bad?.runs).toBeGreaterThanOrEqual(25);
			if (runsEach !== null) expect([groups.good?.runs, groups.bad?.runs]).toEqual([runsEach, runsEach]);
			for (const g of r.body.groups) {
				for (const rec of g.recommendations) {
					for (const v of [rec.recommended, rec.lowerBound, rec.upperBound, ...rec.values])
						if (v !== null) expect(Number.isFinite(v) && v >= 0 && v < 2 ** 50, `${g.labels.suite} ${rec.resource} ${v}`).toBe(true);
					if (rec.resource === "timeout" && rec.recommended !== null) expect(rec.recommended).toBeGreaterThan(0);
				}
			}
			const mem = groups.good!.recommendations.find((x: { resource: string }) => x.resource === "memory")!;
			expect(mem.recommended).toBeGreaterThan(100 << 20);
		};
		await until(async () => (await json<RecommendationsAnswer>(`${queen.url}/v1/recommendations`)).body.groups.length >= 2, 10_000, "runs recorded");
		await check(25);
		// Rows written before the check (by an older queen) hold the absurd values: they are ignored at load.
		await queen.stop();
		const db = new DatabaseSync(join(dir, "q.db"));
		const row = db.prepare("SELECT key, run FROM runs LIMIT 1").get() as { key: string; run: string };
		const bad = { ...JSON.parse(row.run), memoryBytes: 1e200, durationMs: -5, avgCores: Number.MAX_VALUE };
		for (let i = 0; i < 5; i++) db.prepare("INSERT INTO runs (key, run) VALUES (?, ?)").run(row.key, JSON.stringify(bad));
		db.close();
		queen = await startQueen({ db: join(dir, "q.db"), sqlite: true, staleAfter: "2s", evictAfter: "30s" });
		const r = await json<RecommendationsAnswer>(`${queen.url}/v1/recommendations`);
		expect(r.status).toBe(200);
		// Five more in the first row's group: the counts differ, the bounds must not.
		await check(null);
		expect(queen.err()).toMatch(/runs with figures out of range were loaded with those figures dropped/);
	});

	it("queen start --db on a SQLite file that is not the queen's refuses before writing anything: the file is byte for byte unchanged", async () => {
		const path = join(dir, "someone-else.db");
		const other = new DatabaseSync(path);
		other.exec("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices (total) VALUES (12.5);");
		other.close();
		const before = createHash("sha256").update(readFileSync(path)).digest("hex");
		await expect(startQueen({ db: path, sqlite: true })).rejects.toThrow(
			/someone-else\.db is not a queen's database \(tables invoices\): refusing to write to it/,
		);
		expect(createHash("sha256").update(readFileSync(path)).digest("hex")).toBe(before);
		expect(existsSync(`${path}-wal`)).toBe(false);
	});
});

describe("a burst of waiting placements", () => {
	const dir = tempDir("fault-waiters");
	let queen: Daemon;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db"), sqlite: true, staleAfter: "2s", evictAfter: "30s" });
	});
	afterAll(async () => {
		await queen.stop();
		removeDir(dir);
	});

	it("3,000 unplaceable waiters, each on a pool of its own, are all queued while an honest hive never goes stale; each leaves when its client does", async () => {
		const honest = await joined(queen, "honest", { gpus: 1 });
		let beating = true;
		const beats = (async () => {
			while (beating) {
				honest.heartbeat([]);
				await sleep(300);
			}
		})();
		const since = (await json(`${queen.url}/healthz`)).body.lastEventId as number;
		const pending: { destroy(): void }[] = [];
		try {
			for (let i = 0; i < 3000; i++) pending.push(holdPlacement(queen.url, `wait-${i}`));
			const listed = await until(
				async () => {
					const p = (await json<{ pending: { id: string }[] }>(`${queen.url}/v1/placements`)).body.pending;
					return p.length === 3000 ? p : null;
				},
				60_000,
				"3,000 waiters queued",
			);
			// Each once (their order is the order they reached the queen over 3,000 connections, not the order sent).
			expect(new Set(listed.map((w) => w.id)).size).toBe(3000);
			expect((await json(`${queen.url}/healthz`)).status).toBe(200);
			expect((await json(`${queen.url}/v1/hives/honest`)).body.state).toBe("ready");
			// A placement for the honest hive is not held back by waiters that cannot use it.
			const placeable = await json(`${queen.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ id: "fits", command: ["true"], hive: "honest" }),
				signal: AbortSignal.timeout(3000),
			}).catch((e) => ({ status: String(e) }));
			// (The fake hive answers no spawn: the point is that it was sent one.)
			expect(placeable.status === 201 || /TimeoutError|aborted/.test(String(placeable.status))).toBe(true);
			expect(honest.commands.some((m) => m.op === "spawn" && m.body.id === "fits")).toBe(true);
		} finally {
			for (const req of pending) req.destroy();
			beating = false;
			await beats;
		}
		await until(
			async () => (await json<{ pending: unknown[] }>(`${queen.url}/v1/placements`)).body.pending.length === 0,
			30_000,
			"the waiters gone with their clients",
		);
		const staled = (await eventsSince(queen.url, since, "hive.stale")).filter((e) => e.hiveId === "honest");
		expect(staled).toEqual([]);
		honest.close();
	});
});

describe("exited workers past their retention", () => {
	const dir = tempDir("fault-retention");
	let queen: Daemon;
	const start = () => startQueen({ db: join(dir, "q.db"), sqlite: true, staleAfter: "2s", evictAfter: "30s", extra: ["--keep-exited", "1000"] });
	beforeAll(async () => {
		queen = await start();
	});
	afterAll(async () => {
		await queen.stop();
		removeDir(dir);
	});

	it("leave memory beyond the newest N per hive (still found in the database), and the workers list pages with a cursor", async () => {
		const h = await joined(queen, "busy");
		const t0 = Date.parse("2026-12-01T00:00:00Z");
		const limits = { cpu: null, memoryBytes: null, pids: null, timeoutMs: null };
		const runs = Array.from({ length: 2500 }, (_, i) =>
			exitedWorker(`done-${String(i).padStart(4, "0")}`, {
				startedAt: t0 + i * 1000,
				durationMs: 500,
				peakBytes: 1,
				cores: 0.1,
				profile: null,
				labels: {},
				limits,
			}),
		);
		const seq = h.heartbeat(runs);
		await until(() => h.acks.includes(seq), 20_000, "the exits stored");
		h.close();
		// A restart applies the retention at once (it also runs every 10 s).
		await queen.stop();
		queen = await start();
		const all: { id: string; hiveId: string }[] = [];
		let pages = 0;
		for (let cursor: string | null = null; ; pages++) {
			const res = await fetch(`${queen.url}/v1/workers?hive=busy&state=all&limit=300${cursor ? `&cursor=${cursor}` : ""}`);
			expect(res.status).toBe(200);
			const page = (await res.json()) as { id: string; hiveId: string }[];
			expect(page.length).toBeLessThanOrEqual(300);
			all.push(...page);
			cursor = res.headers.get("x-next-cursor");
			if (!cursor) break;
			expect(res.headers.get("link")).toMatch(/rel="next"/);
		}
		// The newest 1,000 are kept, each once, in order; the 1,500 oldest left memory.
		expect(pages).toBe(3);
		expect(all.map((w) => w.id)).toEqual(runs.slice(1500).map((w) => w.id));
		// A worker memory no longer keeps is still found, from the database.
		const old = await json(`${queen.url}/v1/workers/done-0000`);
		expect(old.status).toBe(200);
		expect(old.body).toMatchObject({ id: "done-0000", hiveId: "busy", state: "exited" });
		// Unpaged asks are paged all the same: bounded answers.
		const first = await fetch(`${queen.url}/v1/workers?state=all`);
		expect(((await first.json()) as unknown[]).length).toBe(1000);
		expect(first.headers.get("x-next-cursor")).toBeNull();
		expect((await json(`${queen.url}/v1/workers?cursor=bm90LWEtY3Vyc29y`)).status).toBe(400);
		// The command lists them all, page after page.
		const listed = await runCli("queen", ["workers", "--queen", queen.url, "--state", "all", "--json"]);
		expect(JSON.parse(listed.stdout)).toHaveLength(1000);
	});
});

describe("a process someone else put under the hive's cgroup root", () => {
	const dir = tempDir("fault-alien");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon | null = null;
	let alien: ChildProcess | null = null;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db"), sqlite: true });
	});
	afterAll(async () => {
		alien?.kill("SIGKILL");
		await hive?.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("is not adopted by a fresh hive: not listed, not stoppable through the queen, left running, and reported", async () => {
		// Under <root>/workers/alien, in every hierarchy, as a hive would have made it: but no hive did.
		const driver = createDriver(detect({ requested: "v1", cgroupRoot: root }));
		driver.init();
		const made = driver.create("alien", { cpu: null, memoryBytes: null, pids: null, timeoutMs: null });
		alien = spawn("sleep", ["300"], { stdio: "ignore" });
		for (const f of made.procsFiles) writeFileSync(f, String(alien.pid));
		hive = await startHive({ queen: queen.url, name: "fresh", stateDir: join(dir, "hive"), cgroupRoot: root });
		await until(async () => (await json(`${queen.url}/v1/hives/fresh`)).body?.state === "ready", 15_000, "the hive ready");
		expect((await json(`${hive.url}/v1/workers/alien`)).status).toBe(404);
		expect((await json(`${queen.url}/v1/workers`)).body.map((w: { id: string }) => w.id)).not.toContain("alien");
		expect((await json(`${queen.url}/v1/workers/alien`, { method: "DELETE" })).status).toBe(404);
		expect(() => process.kill(alien!.pid!, 0)).not.toThrow();
		expect(hive.err()).toMatch(/a cgroup under the root has no record of this hive's: left alone.*"id":"alien"/);
	});
});
