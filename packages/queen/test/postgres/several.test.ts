import type { Claim, QueenEvent } from "@apiary/protocol";
import { exitedWorker, FakeHive, gpu, stats, worker } from "@apiary/test-support/fake-hive";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { sleep, until } from "@apiary/test-support/util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type QueenDaemon, startQueenDaemon } from "../../src/daemon.ts";
import type { PgStore } from "../../src/store/pg/store.ts";

// Several queens on one real PostgreSQL server, each serving the whole fleet:
// six simulated hives spread over three queens.
describe("three queens on one database", () => {
	let server: Postgres;
	const queens: QueenDaemon[] = [];
	const hives: FakeHive[] = [];
	const j = async <T = unknown>(url: string, init?: RequestInit) => {
		const r = await fetch(url, init);
		return { status: r.status, body: (await r.json()) as T };
	};

	beforeAll(async () => {
		server = await startPostgres();
		// Started at once on the empty database: the migrations are applied once.
		queens.push(
			...(await Promise.all(
				[0, 1, 2].map(() => startQueenDaemon({ listen: "127.0.0.1:0", db: server.url, staleAfterMs: 3000, evictAfterMs: 60_000, token: null })),
			)),
		);
		for (let i = 0; i < 6; i++) {
			const h = new FakeHive(queens[i % 3]!.url, `h${i}`, { gpus: [gpu(0), gpu(1)] });
			hives.push(h);
			await h.opened();
			h.hello();
			h.heartbeat([worker(`w${i}`)]);
		}
	}, 120_000);
	afterAll(async () => {
		for (const h of hives) h.close();
		for (const q of queens) await q.close().catch(() => {});
		await server?.stop();
	});

	it("every queen lists the whole fleet: six hives ready, their workers and twelve GPUs, within a second of the changes", async () => {
		for (const q of queens) {
			await until(async () => (await j<{ state: string }[]>(`${q.url}/v1/hives`)).body.filter((h) => h.state === "ready").length === 6, 5000, "6 ready");
			expect((await j<{ id: string }[]>(`${q.url}/v1/workers`)).body.map((w) => w.id).sort()).toEqual(["w0", "w1", "w2", "w3", "w4", "w5"]);
			expect((await j<unknown[]>(`${q.url}/v1/gpus?free=true`)).body).toHaveLength(12);
		}
	});

	it("a change on one queen reaches the subscribers of the others within 1 s, with the same ids", async () => {
		const got: QueenEvent[][] = [[], [], []];
		const readers = queens.map((q, i) => {
			const ac = new AbortController();
			void (async () => {
				const res = await fetch(`${q.url}/v1/events?types=worker.spawned`, { signal: ac.signal });
				let buf = "";
				for await (const chunk of res.body!) {
					buf += Buffer.from(chunk).toString();
					for (let k = buf.indexOf("\n\n"); k >= 0; k = buf.indexOf("\n\n")) {
						const block = buf.slice(0, k);
						buf = buf.slice(k + 2);
						const data = /^data: (.*)$/m.exec(block)?.[1];
						if (data && /^event: worker\.spawned$/m.test(block)) got[i]!.push(JSON.parse(data));
					}
				}
			})().catch(() => {});
			return ac;
		});
		await sleep(300);
		const t0 = performance.now();
		hives[0]!.heartbeat([worker("w0"), worker("late")]);
		await until(() => got.every((g) => g.some((e) => e.workerId === "late")), 5000, "every queen's subscriber has it");
		expect(performance.now() - t0).toBeLessThan(1000);
		const ids = got.map((g) => g.find((e) => e.workerId === "late")!.id);
		expect(new Set(ids).size).toBe(1);
		for (const r of readers) r.abort();
	});

	it("60 concurrent claims sent round-robin to the three queens: never one GPU twice, exactly the 12 free granted", async () => {
		const answers = await Promise.all(
			Array.from({ length: 60 }, (_, i) =>
				j<Claim>(`${queens[i % 3]!.url}/v1/claims`, {
					method: "POST",
					headers: { "content-type": "application/json" },
					body: JSON.stringify({ count: 1, ttlSeconds: 600, holder: `ci-${i}` }),
				}),
			),
		);
		const granted = answers.filter((a) => a.status === 201).map((a) => a.body);
		expect(answers.filter((a) => a.status !== 201 && a.status !== 409)).toEqual([]);
		expect(granted).toHaveLength(12);
		const gpus = granted.flatMap((c) => c.gpus.map((g) => `${g.hiveId}/${g.uuid}`));
		expect(new Set(gpus).size).toBe(12);
		// Every queen agrees: nothing free, the same twelve claims.
		for (const q of queens) {
			await until(async () => (await j<Claim[]>(`${q.url}/v1/claims`)).body.length === 12, 5000, "12 claims everywhere");
			expect((await j<unknown[]>(`${q.url}/v1/gpus?free=true`)).body).toEqual([]);
		}
		for (const c of granted) expect((await j(`${queens[1]!.url}/v1/claims/${c.id}`, { method: "DELETE" })).status).toBe(200);
		for (const q of queens) await until(async () => (await j<unknown[]>(`${q.url}/v1/gpus?free=true`)).body.length === 12, 5000, "all free again");
	});

	it("a Last-Event-ID from queen A resumes on queen B with exactly the lifecycle events missed, as the database holds them", async () => {
		const db = new pg.Client({ connectionString: server.url });
		await db.connect();
		try {
			const last = Number((await db.query("SELECT max(id) AS id FROM events")).rows[0].id);
			hives[1]!.heartbeat([worker("w1"), worker("missed-a")]);
			hives[2]!.heartbeat([worker("w2"), worker("missed-b")]);
			await until(
				async () => (await db.query("SELECT count(*)::int AS n FROM events WHERE id > $1 AND type = 'worker.spawned'", [last])).rows[0].n === 2,
				5000,
				"logged",
			);
			const want = (await db.query<{ id: string }>("SELECT id FROM events WHERE id > $1 ORDER BY id", [last])).rows.map((r) => Number(r.id));
			const res = await fetch(`${queens[2]!.url}/v1/events`, { headers: { "last-event-id": String(last) } });
			const reader = res.body!.getReader();
			let text = "";
			const ids = () => [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
			for (let i = 0; i < 50 && ids().filter((x) => x > last).length < want.length; i++) {
				const { value } = await Promise.race([reader.read(), sleep(200).then(() => ({ value: undefined }))]);
				if (value) text += Buffer.from(value).toString();
			}
			await reader.cancel();
			expect(text).not.toContain("event: snapshot");
			// Durable events in order, no gap, no duplicate (samples, never stored, would carry a repeated id).
			expect([...new Set(ids())]).toEqual(want);
		} finally {
			await db.end();
		}
	});

	it("a resume from before what the log keeps gets stream.reset and a snapshot, also on a queen that has not pruned since another did", async () => {
		// A queen started now: its memory window is empty, and the oldest id it knows is the one it loaded.
		const late = await startQueenDaemon({ listen: "127.0.0.1:0", db: server.url, staleAfterMs: 3000, evictAfterMs: 60_000, token: null });
		try {
			await (queens[0]!.registry.store as PgStore).pruneEvents(2);
			const res = await fetch(`${late.url}/v1/events?since=1`);
			const reader = res.body!.getReader();
			let text = "";
			for (let i = 0; i < 50 && !text.includes("event: snapshot"); i++) {
				const { value } = await Promise.race([reader.read(), sleep(200).then(() => ({ value: undefined }))]);
				if (value) text += Buffer.from(value).toString();
			}
			await reader.cancel();
			// Told at once, nothing replayed across the gap, then the whole state.
			expect(text.indexOf("event: stream.reset")).toBeGreaterThanOrEqual(0);
			expect(text.indexOf("event: stream.reset")).toBeLessThan(text.indexOf("event: snapshot"));
			expect(text).not.toContain("event: worker.spawned");
			expect(text).not.toContain("event: hive.joined");
			// The queen that pruned knows the new bound.
			const db = new pg.Client({ connectionString: server.url });
			await db.connect();
			const first = Number((await db.query("SELECT min(id) AS id FROM events")).rows[0].id);
			await db.end();
			expect(queens[0]!.registry.events.oldestRetained()).toBeLessThanOrEqual(first);
			expect((queens[0]!.registry.store as PgStore).events.firstLoggedId()).toBe(first);
		} finally {
			await late.close();
		}
	});

	it("placements through the three queens at once never place two workers on one GPU, and an idempotency key answered by one queen is answered alike by another", async () => {
		// The simulated hives start what they are asked to: reply 201, then report the worker running.
		const spawned: string[] = [];
		for (const h of hives) {
			h.ws.on("message", (d) => {
				const m = JSON.parse(d.toString());
				if (m.type !== "command" || m.op !== "spawn") return;
				spawned.push(m.body.id);
				const w = worker(m.body.id, { gpus: m.body.gpus ?? [] });
				h.send({ type: "reply", id: m.id, status: 201, body: w });
				h.send({ type: "event", seq: 1000 + spawned.length, event: "worker.spawned", worker: w });
			});
		}
		const post = (q: number, body: object) =>
			j<{ hiveId: string; id: string; gpus: string[] }>(`${queens[q]!.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify(body),
			});
		const first = await post(0, { id: "keyed", command: ["true"], gpus: { count: 1 }, idempotencyKey: "k-1" });
		expect(first.status).toBe(201);
		const again = await post(1, { id: "keyed", command: ["true"], gpus: { count: 1 }, idempotencyKey: "k-1" });
		expect(again).toEqual(first);
		expect(spawned.filter((id) => id === "keyed")).toHaveLength(1);
		for (const q of queens) await until(async () => (await j<unknown[]>(`${q.url}/v1/gpus?free=true`)).body.length === 11, 5000, "11 free everywhere");
		const answers = await Promise.all(Array.from({ length: 23 }, (_, i) => post(i % 3, { id: `p${i}`, command: ["true"], gpus: { count: 1 } })));
		expect(answers.filter((a) => a.status !== 201 && a.status !== 409)).toEqual([]);
		const placed = [first.body, ...answers.filter((a) => a.status === 201).map((a) => a.body)];
		expect(placed).toHaveLength(12);
		const gpus = placed.flatMap((p) => p.gpus.map((g) => `${p.hiveId}/${g}`));
		expect(new Set(gpus).size).toBe(12);
	});

	it("a hive's stats samples reach the other queens, coarsened (with its renewal, every 10 s)", async () => {
		const h = hives[3]!; // on queen 0
		const beat = setInterval(() => h.heartbeat([worker("w3", { stats: stats(Date.now()) })]), 500);
		try {
			const t0 = Date.now();
			const seen = await until(
				async () => {
					const w = (await j<{ stats: { sampledAt: number } | null }>(`${queens[1]!.url}/v1/workers/w3`)).body;
					return w.stats && w.stats.sampledAt >= t0 ? w.stats : null;
				},
				15_000,
				"a sample of w3 on queen 1",
			);
			// At most a renewal period and a poll old when it arrived.
			expect(Date.now() - seen.sampledAt).toBeLessThan(12_000);
		} finally {
			clearInterval(beat);
		}
	});

	it("a run recorded through one queen is in every queen's right-sizing history", async () => {
		const run = exitedWorker("sized", {
			startedAt: Date.now() - 120_000,
			durationMs: 60_000,
			peakBytes: 300 << 20,
			cores: 0.5,
			profile: null,
			labels: { suite: "shared" },
			limits: { cpu: 1, memoryBytes: 1 << 30, pids: null, timeoutMs: null },
		});
		hives[4]!.send({ type: "event", seq: 5000, event: "worker.exited", worker: run });
		for (const q of queens) {
			await until(
				async () => (await j<{ groups: { runs: number }[] }>(`${q.url}/v1/recommendations?label=suite=shared`)).body.groups[0]?.runs === 1,
				5000,
				"the run in this queen's history",
			);
		}
	});
});
