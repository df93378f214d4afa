import { request } from "node:http";
import { join } from "node:path";
import { packStats, type QueenEvent, type WorkerInfo, type WorkerStats } from "@apiary/protocol";
import { EventSource } from "eventsource";
import { afterEach, describe, expect, it } from "vitest";
import { type QueenDaemon, startQueenDaemon } from "../../src/daemon.ts";
import { endedWorker, FakeHive, gpu, stats as sample, worker } from "@apiary/test-support/fake-hive";
import { removeDir, tempDir } from "@apiary/test-support/procs";
import { queenDb } from "@apiary/test-support/queen-db";
import { sleep, until } from "@apiary/test-support/util";

// biome-ignore lint/suspicious/noExplicitAny: test JSON
const j = async (url: string, init?: RequestInit): Promise<any> => (await fetch(url, init)).json();

describe("the queen's event stream under load, claims and bad input", () => {
	let q: QueenDaemon | null = null;
	let dir = "";
	const hives: FakeHive[] = [];
	const closers: (() => void)[] = [];
	const boot = async (o: Partial<Parameters<typeof startQueenDaemon>[0]> = {}) => {
		dir = tempDir("queen");
		q = await startQueenDaemon({
			listen: "127.0.0.1:0",
			db: await queenDb(join(dir, "queen.db")),
			staleAfterMs: 3000,
			evictAfterMs: 90_000,
			token: null,
			...o,
		});
		return q;
	};
	const connect = async (id: string, o: ConstructorParameters<typeof FakeHive>[2] = {}) => {
		const h = new FakeHive(q!.url, id, o);
		hives.push(h);
		await h.opened();
		h.hello();
		return h;
	};
	afterEach(async () => {
		for (const c of closers.splice(0)) c();
		for (const h of hives.splice(0)) h.close();
		await q?.close();
		q = null;
		removeDir(dir);
	});

	it("a subscriber that never reads gets stream.lagged and is closed; a fast one is not delayed; heartbeats keep flowing", async () => {
		let lagCount = 0;
		await boot({ queueLimit: 200, onLag: () => lagCount++ });
		const h = await connect("busy");
		const workers = Array.from({ length: 100 }, (_, i) => worker(`w${i}`));
		h.heartbeat(workers);
		// The fast subscriber: a real EventSource.
		const fast: { e: QueenEvent; at: number }[] = [];
		const es = new EventSource(`${q!.url}/v1/events?types=worker.updated`);
		closers.push(() => es.close());
		es.addEventListener("worker.updated", (ev) => fast.push({ e: JSON.parse(ev.data), at: Date.now() }));
		await new Promise((r) => es.addEventListener("snapshot", r));
		// The slow one: connects, then never reads its socket.
		let slowData = "";
		let slowClosed = false;
		let slowRes: import("node:http").IncomingMessage | null = null;
		const slowReq = request(`${q!.url}/v1/events`, { headers: { accept: "text/event-stream" } }, (res) => {
			slowRes = res;
			res.once("data", (d) => {
				slowData += d;
				res.pause();
			});
			res.on("close", () => {
				slowClosed = true;
			});
		});
		slowReq.end();
		closers.push(() => slowReq.destroy());
		await until(() => slowData.includes("snapshot"), 5000, "slow's snapshot");
		// Ingest: 100 workers' stats every 10 ms, with a big enough payload to fill socket buffers.
		const pad = "x".repeat(2000);
		let beats = 0;
		const deadline = Date.now() + 20_000;
		while (lagCount === 0 && Date.now() < deadline) {
			const now = Date.now();
			// 100 long-lived workers (their updates coalesce) and 5 new ones per beat (spawns do not).
			const fresh = Array.from({ length: 5 }, (_, i) => worker(`new-${beats}-${i}`, { labels: { pad } }));
			h.heartbeat([...workers.map((w, i) => ({ ...w, labels: { pad }, stats: stats(now + i) })), ...fresh]);
			beats++;
			await sleep(10);
		}
		expect(lagCount).toBeGreaterThan(0);
		// Heartbeats kept being acked while the slow reader sat there.
		await until(() => h.acks.length >= beats, 5000, "all heartbeats acked");
		// The fast subscriber kept up: recent updates arrive within a short time of being sent.
		const recent = fast.filter((f) => f.at > Date.now() - 2000);
		expect(recent.length).toBeGreaterThan(0);
		const delays = recent.map((f) => f.at - (f.e.data as { stats: { sampledAt: number } }).stats.sampledAt).sort((a, b) => a - b);
		expect(delays[Math.floor(delays.length * 0.9)]!).toBeLessThan(1000);
		// Now let the slow one read what was buffered: its last event is stream.lagged, and it was closed.
		slowRes!.on("data", (d) => {
			slowData += d;
		});
		slowRes!.resume();
		await until(() => slowClosed, 10_000, "slow subscriber closed");
		const lastEvent = slowData.trim().split("\n\n").at(-1)!;
		expect(lastEvent).toMatch(/^event: stream\.lagged/);
		const notice = JSON.parse(
			lastEvent
				.split("\n")
				.find((l) => l.startsWith("data: "))!
				.slice(6),
		);
		expect(notice.data.lastEventId).toBeGreaterThan(0);
	}, 60_000);

	it("coalesces worker.updated per worker for a subscriber that is behind, keeping ids increasing", async () => {
		const { Subscriber } = await import("../../src/subscriber.ts");
		const s = new Subscriber(10);
		const ev = (id: number, type: QueenEvent["type"], w: string | null) => ({ id, type, at: "", hiveId: "h", workerId: w, data: {} }) as QueenEvent;
		s.push(ev(1, "worker.updated", "a"));
		s.push(ev(2, "worker.spawned", "b"));
		s.push(ev(3, "worker.updated", "a"));
		s.push(ev(4, "worker.updated", "b"));
		s.push(ev(5, "worker.updated", "a"));
		const batch = (await s.next())!;
		expect(batch.map((e) => e.id)).toEqual([2, 4, 5]);
		expect(s.coalesced).toBe(2);
	});

	it("with a coalescing window, samples are held one per worker and released at the window's end; a worker's lifecycle event releases its sample first", async () => {
		const { Subscriber } = await import("../../src/subscriber.ts");
		const s = new Subscriber(10, { window: true });
		const ev = (id: number, type: QueenEvent["type"], w: string | null) => ({ id, type, at: "", hiveId: "h", workerId: w, data: {} }) as QueenEvent;
		for (let i = 1; i <= 50; i++) s.push(ev(i, "worker.updated", i % 2 ? "a" : "b"));
		// Fifty samples of two workers: two held, none queued, far under the queue's limit of 10 (no lag).
		expect(s.holding).toBe(2);
		expect(s.depth).toBe(0);
		expect(s.lagged).toBe(false);
		s.push(ev(51, "worker.exited", "b"));
		// b's held sample goes out before its exit; a's waits for the window.
		expect((await s.next())!.map((e) => [e.id, e.workerId])).toEqual([
			[50, "b"],
			[51, "b"],
		]);
		s.push(ev(52, "hive.joined", null));
		s.release();
		expect((await s.next())!.map((e) => [e.id, e.type])).toEqual([
			[52, "hive.joined"],
			[49, "worker.updated"],
		]);
		expect(s.holding).toBe(0);
		expect(s.coalesced).toBe(48);
	});

	it("?coalesceMs sends each worker's latest sample at most once per window, with SSE ids that never go back; lifecycle events are not held; a bad value is a 400 naming it", async () => {
		await boot();
		for (const bad of ["0", "99", "600001", "1e3", "-5", "abc"]) {
			const r = await fetch(`${q!.url}/v1/events?coalesceMs=${bad}`, { headers: { accept: "text/event-stream" } });
			expect(r.status, bad).toBe(400);
			expect(((await r.json()) as { message: string }).message).toMatch(/coalesceMs/);
		}
		const h = await connect("h");
		h.heartbeat([worker("a"), worker("b")]);
		await until(async () => (await j(`${q!.url}/v1/workers`)).length === 2, 5000, "a and b");
		type Seen = { type: string; worker: string | null; sseId: number; sampledAt: number | null };
		const listen = (query: string) => {
			const seen: Seen[] = [];
			const es = new EventSource(`${q!.url}/v1/events?${query}`);
			closers.push(() => es.close());
			for (const t of ["worker.updated", "worker.exited", "snapshot"])
				es.addEventListener(t, (m) => {
					const e = JSON.parse(m.data) as QueenEvent;
					const stats = (e.data as { stats?: WorkerStats }).stats;
					seen.push({ type: t, worker: e.workerId, sseId: Number(m.lastEventId), sampledAt: stats?.sampledAt ?? null });
				});
			return { seen, ready: new Promise((r) => es.addEventListener("snapshot", r)) };
		};
		const windowed = listen("hive=h&coalesceMs=1000");
		const every = listen("hive=h");
		await Promise.all([windowed.ready, every.ready]);
		// 25 samples of each worker over 2.5 s, and a lifecycle event (c spawned) midway, which moves the event ids on.
		const T = 1_800_000_000_000;
		const tick = (id: string, t: number) => ({ ...worker(id), stats: sample(t) }) as WorkerInfo;
		const t0 = Date.now();
		for (let i = 1; i <= 25; i++) {
			h.heartbeat([tick("a", T + i), tick("b", T + i), ...(i >= 12 ? [worker("c")] : [])]);
			await sleep(100);
		}
		const elapsed = Date.now() - t0;
		await sleep(1200);
		const updates = (l: Seen[], w: string) => l.filter((e) => e.type === "worker.updated" && e.worker === w);
		for (const w of ["a", "b"]) {
			const got = updates(windowed.seen, w);
			// At most one per started window (plus one for the window in flight), each the latest at its release.
			expect(got.length, w).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 2);
			expect(got.length, w).toBeGreaterThanOrEqual(2);
			expect(got.at(-1)!.sampledAt, w).toBe(T + 25);
			expect(updates(every.seen, w).length, w).toBeGreaterThanOrEqual(15);
		}
		// Last-Event-ID never went back (held samples go out after newer events).
		const ids = windowed.seen.map((e) => e.sseId);
		expect(ids).toEqual([...ids].sort((x, y) => x - y));
		// A worker's exit releases its held sample first: a's last sample comes before its exit, none after.
		h.heartbeat([tick("a", T + 26), tick("b", T + 26), worker("c")]);
		await sleep(50);
		h.heartbeat([{ ...endedWorker("a", 1000, worker("a").gpus), startedAt: worker("a").startedAt }, tick("b", T + 27), worker("c")]);
		await until(() => windowed.seen.some((e) => e.type === "worker.exited" && e.worker === "a"), 5000, "a's exit");
		await sleep(1200);
		const aEvents = windowed.seen.filter((e) => e.worker === "a").map((e) => (e.type === "worker.exited" ? "exited" : String(e.sampledAt! - T)));
		expect(aEvents.slice(-2)).toEqual(["26", "exited"]);
		const ids2 = windowed.seen.map((e) => e.sseId);
		expect(ids2).toEqual([...ids2].sort((x, y) => x - y));
	}, 30_000);

	it("a resume gets each worker's latest sample after its cursor once, in id order with the lifecycle events; samples keep flowing after it", async () => {
		await boot();
		const h = await connect("h");
		const tick = (id: string, t: number) =>
			({ id, state: "running", startedAt: worker(id).startedAt, pid: 1000, s: packStats(sample(t)) }) as unknown as WorkerInfo;
		const sampledAt = async (id: string) => (await j(`${q!.url}/v1/workers/${id}?hive=h`)).stats?.sampledAt ?? null;
		h.heartbeat([worker("a"), worker("b")]);
		await until(async () => (await j(`${q!.url}/v1/workers`)).length === 2, 5000, "a and b");
		const T = 1_800_000_000_000;
		h.heartbeat([tick("a", T + 1), tick("b", T + 1)]);
		await until(async () => (await sampledAt("b")) === T + 1, 5000, "first samples");
		const cursor = q!.registry.events.lastId;
		// After the cursor: four samples each, a new worker, then one more sample of a.
		for (let i = 2; i <= 5; i++) h.heartbeat([tick("a", T + i), tick("b", T + i)]);
		h.heartbeat([tick("a", T + 5), tick("b", T + 5), worker("c")]);
		h.heartbeat([tick("a", T + 6), tick("b", T + 5), tick("c", T + 6)]);
		await until(async () => (await sampledAt("a")) === T + 6 && (await sampledAt("c")) === T + 6, 5000, "the last samples");
		const got: QueenEvent[] = [];
		const es = new EventSource(`${q!.url}/v1/events?since=${cursor}&hive=h`);
		closers.push(() => es.close());
		for (const t of ["worker.updated", "worker.spawned", "snapshot", "stream.reset"]) es.addEventListener(t, (ev) => got.push(JSON.parse(ev.data)));
		await until(() => got.filter((e) => e.type === "worker.updated").length >= 3, 5000, "the replayed samples");
		await sleep(300);
		const ids = got.map((e) => e.id);
		expect(ids).toEqual([...ids].sort((x, y) => x - y));
		expect(got.map((e) => e.type)).not.toContain("snapshot");
		const replayed = got.filter((e) => e.type === "worker.updated");
		// Coalesced: exactly the latest of each worker, not the four before it.
		expect(replayed.map((e) => [e.workerId, (e.data as { stats: WorkerStats }).stats.sampledAt]).sort()).toEqual([
			["a", T + 6],
			["b", T + 5],
			["c", T + 6],
		]);
		// b's latest sample came before c was described, a's after it (numbered
		// at commit, a sample goes out at once, before a change made with it is
		// read back, so only the first holds there).
		const spawned = got.find((e) => e.type === "worker.spawned" && e.workerId === "c")!;
		const order = got.map((e) => `${e.type === "worker.spawned" ? "spawned" : "updated"}:${e.workerId}`);
		expect(order.indexOf("updated:b")).toBeLessThan(order.indexOf("spawned:c"));
		if (!q!.registry.events.numberedAtCommit) expect(order.indexOf("updated:a")).toBeGreaterThan(order.indexOf("spawned:c"));
		expect(spawned.id).toBeGreaterThan(cursor);
		// Live after the replay, with no lifecycle event in between (a sample
		// numbered at commit carries the id of the event before it); and a
		// fresh subscriber gets samples after its snapshot the same way.
		const fresh: QueenEvent[] = [];
		const es2 = new EventSource(`${q!.url}/v1/events?types=worker.updated`);
		closers.push(() => es2.close());
		es2.addEventListener("worker.updated", (ev) => fresh.push(JSON.parse(ev.data)));
		await new Promise((r) => es2.addEventListener("snapshot", r));
		h.heartbeat([tick("a", T + 7), tick("b", T + 7), tick("c", T + 7)]);
		const live = (e: QueenEvent) => e.workerId === "a" && (e.data as { stats: WorkerStats }).stats.sampledAt === T + 7;
		await until(() => got.some(live), 5000, "a live sample after the resume");
		await until(() => fresh.some(live), 5000, "a live sample after the snapshot");
		expect(got.filter((e) => e.type === "worker.updated" && e.workerId === "a").length).toBe(2);
	});

	it("describes itself in OpenAPI and serves the dashboard", async () => {
		await boot();
		const doc = await j(`${q!.url}/openapi.json`);
		expect(Object.keys(doc.paths)).toEqual(
			expect.arrayContaining(["/v1/hives", "/v1/hives/{id}", "/v1/workers", "/v1/gpus", "/v1/claims", "/v1/claims/{id}", "/v1/events"]),
		);
		expect(doc.paths["/v1/claims"].post.requestBody.content["application/json"].schema.required).toEqual(["count", "ttlSeconds", "holder"]);
		// Answers are documented from the same declarations as the requests.
		expect(doc.paths["/v1/claims"].post.responses["201"].content["application/json"].schema.required).toEqual(
			expect.arrayContaining(["id", "holder", "gpus", "expiresAt"]),
		);
		expect(doc.paths["/v1/gpus"].get.responses["200"].content["application/json"].schema.items.properties.free).toBeDefined();
		expect(doc.paths["/v1/hives/{id}"].get.responses["404"]).toBeDefined();
		// Errors are rendered by fastify's own path with their status's label.
		expect(await (await fetch(`${q!.url}/v1/hives/nope`)).json()).toMatchObject({ statusCode: 404, error: "Not Found", message: "no hive nope" });
		expect((await fetch(`${q!.url}/docs/`)).status).toBe(200);
		const page = await fetch(`${q!.url}/`);
		expect(page.headers.get("content-type")).toMatch(/text\/html/);
		expect(await page.text()).toMatch(/<title>Apiary<\/title>/);
	});

	it("keeps the stream alive with comments", async () => {
		await boot({ keepaliveMs: 200 });
		let data = "";
		const req = request(`${q!.url}/v1/events`, { headers: { accept: "text/event-stream" } }, (res) => res.on("data", (d) => (data += d)));
		req.end();
		closers.push(() => req.destroy());
		await until(() => data.includes(": heartbeat"), 5000, "a keepalive comment");
	});

	it("20 concurrent claims for one GPU each with 4 free: exactly 4 succeed, on 4 different GPUs; expiry releases them", async () => {
		await boot();
		const h = await connect("gpus", { gpus: [0, 1, 2, 3, 4].map((i) => gpu(i, i === 4 ? { memoryUsedMiB: 30000 } : {})) });
		h.heartbeat([]);
		await until(async () => (await j(`${q!.url}/v1/gpus?free=true`)).length === 4, 5000, "4 free GPUs");
		const events: QueenEvent[] = [];
		const es = new EventSource(`${q!.url}/v1/events?types=claim.*`);
		closers.push(() => es.close());
		for (const t of ["claim.created", "claim.released"]) es.addEventListener(t, (ev) => events.push(JSON.parse(ev.data)));
		await new Promise((r) => es.addEventListener("snapshot", r));
		const results = await Promise.all(
			Array.from({ length: 20 }, (_, i) =>
				fetch(`${q!.url}/v1/claims`, {
					method: "POST",
					headers: { "content-type": "application/json" },
					body: JSON.stringify({ count: 1, ttlSeconds: 1, holder: `sched-${i}` }),
				}).then(async (r) => ({ status: r.status, body: (await r.json()) as any })),
			),
		);
		const ok = results.filter((r) => r.status === 201);
		expect(ok).toHaveLength(4);
		expect(results.filter((r) => r.status === 409)).toHaveLength(16);
		expect(results.find((r) => r.status === 409)!.body.message).toMatch(/not enough free GPUs/);
		expect(results.find((r) => r.status === 409)!.body.error).toBe("Conflict");
		const claimed = ok.map((r) => r.body.gpus[0].index).sort();
		expect(claimed).toEqual([0, 1, 2, 3]);
		expect(await j(`${q!.url}/v1/gpus?free=true`)).toEqual([]);
		expect((await j(`${q!.url}/v1/claims`)).length).toBe(4);
		// Expiry releases them by itself.
		await until(async () => (await j(`${q!.url}/v1/claims`)).length === 0, 5000, "claims to expire");
		await until(() => events.filter((e) => e.type === "claim.released").length === 4, 5000, "claim.released events");
		expect(events.filter((e) => e.type === "claim.created")).toHaveLength(4);
		expect(events.filter((e) => e.type === "claim.released").every((e) => (e.data as { reason: string }).reason === "expired")).toBe(true);
		expect((await j(`${q!.url}/v1/gpus?free=true`)).length).toBe(4);
	});

	it("claims: best fit on one hive, release by DELETE, minimum memory", async () => {
		await boot();
		const a = await connect("a", { gpus: [0, 1, 2].map((i) => gpu(i)) });
		a.heartbeat([]);
		const b = await connect("b", {
			gpus: [0, 1].map((i) =>
				gpu(i, { uuid: `GPU-bbbbbbbb-0000-4000-8000-00000000000${i}`, memoryTotalMiB: 24564, memoryFreeMiB: 24000, name: "NVIDIA GeForce RTX 4090" }),
			),
		});
		b.heartbeat([]);
		await until(async () => (await j(`${q!.url}/v1/gpus?free=true`)).length === 5, 5000, "5 free");
		const post = (body: object) =>
			fetch(`${q!.url}/v1/claims`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then(async (r) => ({
				status: r.status,
				body: (await r.json()) as any,
			}));
		// Two on one hive: b has exactly two, the best fit.
		const two = await post({ count: 2, sameHive: true, ttlSeconds: 60, holder: "ci" });
		expect(two.status).toBe(201);
		expect(two.body.gpus.map((g: { hiveId: string }) => g.hiveId)).toEqual(["b", "b"]);
		// 40 GiB free each: only the A100s.
		const big = await post({ count: 1, minMemoryMiB: 40960, ttlSeconds: 60, holder: "ci" });
		expect(big.body.gpus[0].hiveId).toBe("a");
		expect((await post({ count: 3, minMemoryMiB: 40960, ttlSeconds: 60, holder: "ci" })).status).toBe(409);
		const del = await fetch(`${q!.url}/v1/claims/${two.body.id}`, { method: "DELETE" });
		expect(del.status).toBe(200);
		expect((await fetch(`${q!.url}/v1/claims/${two.body.id}`, { method: "DELETE" })).status).toBe(404);
		expect((await j(`${q!.url}/v1/gpus?free=true&hive=b`)).length).toBe(2);
		expect((await j(`${q!.url}/v1/gpus?name=4090`)).length).toBe(2);
	});

	it("rejects bad input over HTTP and on the socket with clear errors, and the registry is unchanged", async () => {
		await boot({ token: "tok", maxMessageBytes: 64 * 1024 });
		const good = await connect("good", { token: "tok", gpus: [gpu(0)] });
		good.heartbeat([worker("w1")]);
		await until(() => good.acks.length === 1, 5000, "ack");
		// With a token set, reads need it too.
		const tok = { headers: { authorization: "Bearer tok" } };
		expect((await fetch(`${q!.url}/v1/hives`)).status).toBe(401);
		expect((await fetch(`${q!.url}/v1/events`)).status).toBe(401);
		expect((await fetch(`${q!.url}/healthz`)).status).toBe(200);
		const state = async () =>
			JSON.stringify([await j(`${q!.url}/v1/hives`, tok), await j(`${q!.url}/v1/workers`, tok), await j(`${q!.url}/v1/claims`, tok)]).replace(
				/"lastSeenAgoMs":\d+/g,
				'"lastSeenAgoMs":0',
			);
		const before = await state();
		const lastId = q!.registry.events.lastId;
		const auth = { authorization: "Bearer tok", "content-type": "application/json" };
		const http = async (method: string, path: string, body?: string, headers: Record<string, string> = auth) => {
			const r = await fetch(`${q!.url}${path}`, { method, headers, body });
			return { status: r.status, message: ((await r.json().catch(() => ({}))) as { message?: string }).message ?? "" };
		};
		expect(await http("POST", "/v1/claims", "{nope")).toMatchObject({ status: 400 });
		expect(await http("POST", "/v1/claims", JSON.stringify({ count: "two", ttlSeconds: 5, holder: "x" }))).toMatchObject({
			status: 400,
			message: "body.count must be integer",
		});
		expect(await http("POST", "/v1/claims", JSON.stringify({ count: 1, ttlSeconds: 5 }))).toMatchObject({
			status: 400,
			message: 'body: missing field "holder"',
		});
		expect(await http("POST", "/v1/claims", JSON.stringify({ count: 1, ttlSeconds: 5, holder: "x", extra: 1 }))).toMatchObject({
			status: 400,
			message: 'body: unknown field "extra"',
		});
		expect(await http("POST", "/v1/claims", JSON.stringify({ count: 1, ttlSeconds: 5, holder: "x" }), { "content-type": "application/json" })).toMatchObject({
			status: 401,
		});
		expect(await http("DELETE", "/v1/claims/c-000000000000", undefined, {})).toMatchObject({ status: 401 });
		expect((await http("POST", "/v1/claims", JSON.stringify({ count: 1, ttlSeconds: 5, holder: "x".repeat(70 * 1024) }))).status).toBe(413);
		expect((await http("GET", "/v1/gpus?minMemoryMiB=lots")).message).toMatch(/querystring\.minMemoryMiB must match pattern/);
		expect((await http("GET", "/v1/gpus?free=maybe")).message).toMatch(/querystring\.free/);
		expect((await http("GET", "/v1/workers?state=zombie")).status).toBe(400);
		expect((await http("GET", "/v1/workers/..%2Fx")).status).toBe(400);
		expect((await http("GET", "/v1/hives/a%2Fb")).status).toBe(400);
		expect((await http("GET", "/v1/events?types=%3Bdrop")).status).toBe(400);
		expect((await http("GET", "/v1/events?hive=..")).status).toBe(400);
		// The socket.
		const closeOf = async (msgs: unknown[], o: { token?: string; hello?: boolean } = {}) => {
			const h = new FakeHive(q!.url, "bad", { token: o.token ?? "tok" });
			hives.push(h);
			await h.opened();
			if (o.hello) h.hello();
			for (const m of msgs) h.send(m);
			return until(() => h.closed, 5000, "close");
		};
		// Complete but for what a case is about, so the error named is that one.
		const completeSnapshot = {
			hiveId: "bad",
			instanceId: "x",
			seq: 1,
			takenAt: "2026-11-21T00:00:00Z",
			tickMs: 0,
			driver: { name: "v2", enforced: true, root: null, reason: "t" },
			workers: [],
			gpu: { state: "absent", message: null, ageMs: null, gpus: [] },
		};
		expect(await closeOf(["{not json"])).toEqual({ code: 1007, reason: "malformed JSON" });
		expect(await closeOf([{ type: "launch-missiles" }])).toEqual({ code: 1008, reason: 'unknown message type "launch-missiles"' });
		expect(await closeOf([{ type: "heartbeat", seq: 1, snapshot: { hiveId: "bad", instanceId: "x", workers: [], gpu: { gpus: [] } } }])).toEqual({
			code: 1008,
			reason: "the first message must be hello",
		});
		expect((await closeOf([{ type: "hello", hiveId: "../x", instanceId: "i", version: "v", host: {}, driver: {}, gpus: [] }])).reason).toMatch(
			/^hello\.hiveId must match pattern/,
		);
		expect((await closeOf([{ type: "heartbeat", seq: "one", snapshot: {} }], { hello: true })).reason).toMatch(/^heartbeat\.seq must be integer/);
		expect((await closeOf([{ type: "heartbeat", seq: 1, snapshot: { ...completeSnapshot, workers: [{ id: "a/b" }] } }], { hello: true })).reason).toMatch(
			/heartbeat\.snapshot\.workers\.0/,
		);
		expect((await closeOf([`{"type":"heartbeat","seq":1,"pad":"${"x".repeat(70 * 1024)}"}`], { hello: true })).code).toBe(1009);
		const noToken = new FakeHive(q!.url, "sneaky");
		hives.push(noToken);
		await expect(noToken.opened()).rejects.toThrow(/HTTP 401/);
		// "bad" said hello in some cases above; everything else is as it was.
		const after = JSON.parse(await state());
		const beforeParsed = JSON.parse(before);
		expect(after[0].filter((h: { id: string }) => h.id !== "bad")).toEqual(beforeParsed[0]);
		expect(after[1]).toEqual(beforeParsed[1]);
		expect(after[2]).toEqual(beforeParsed[2]);
		expect((await q!.registry.events.since(lastId)).filter((e) => e.hiveId !== "bad")).toEqual([]);
		// The good hive was not disturbed.
		good.heartbeat([worker("w1")]);
		await until(() => good.acks.length === 2, 5000, "good hive still acked");
		// Packed stats are typed position by position: a string where a number goes is refused by name
		// (the worker is announced first, so this one changes the registry: checked after the rest).
		const full = worker("typed");
		const badTick = { id: "typed", state: "running", startedAt: full.startedAt, pid: 1, s: Array.from({ length: 28 }, (_, i) => (i === 5 ? "lots" : null)) };
		expect(
			await closeOf(
				[
					{ type: "heartbeat", seq: 1, snapshot: { ...completeSnapshot, workers: [full] } },
					{ type: "heartbeat", seq: 2, snapshot: { ...completeSnapshot, workers: [badTick] } },
				],
				{ hello: true },
			),
		).toEqual({ code: 1008, reason: "heartbeat: packed stats position 5 must be a number or null" });
	});

	it("after a restart every hive is unknown until it reconnects, with workers and claims back from disk", async () => {
		const d = await boot();
		const db = await queenDb(join(dir, "queen.db"));
		const h = await connect("h", { gpus: [gpu(0), gpu(1)] });
		h.heartbeat([worker("keep", { gpus: ["0"] })]);
		await until(() => h.acks.length === 1, 5000, "ack");
		const claim = await j(`${d.url}/v1/claims`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ count: 1, ttlSeconds: 600, holder: "ci" }),
		});
		const lastId = d.registry.events.lastId;
		h.close();
		await d.close();
		q = await startQueenDaemon({ listen: "127.0.0.1:0", db, staleAfterMs: 3000, evictAfterMs: 90_000, token: null });
		expect(q.registry.events.lastId).toBe(lastId);
		const hive = await j(`${q.url}/v1/hives/h`);
		expect(hive).toMatchObject({ id: "h", state: "unknown", connected: false });
		expect(await j(`${q.url}/v1/workers/keep`)).toMatchObject({ hiveId: "h", state: "running" });
		expect((await j(`${q.url}/v1/claims`)).map((c: { id: string }) => c.id)).toEqual([claim.id]);
		expect(await j(`${q.url}/v1/gpus?free=true`)).toEqual([]); // unknown hive: nothing free
		const back = await connect("h", { gpus: [gpu(0), gpu(1)] });
		back.heartbeat([worker("keep", { gpus: ["0"] })]);
		await until(async () => (await j(`${q!.url}/v1/hives/h`)).state === "ready", 5000, "ready");
		expect(await j(`${q.url}/v1/gpus?free=true`)).toEqual([]); // 0 held by keep, 1 claimed
		// Published once committed (at once on SQLite; read back from the log on PostgreSQL).
		const next = await until(
			async () => {
				const n = await q!.registry.events.since(lastId);
				return n.length > 0 ? n : null;
			},
			5000,
			"events after the restart",
		);
		expect(next[0]!.id).toBe(lastId + 1); // ids continue
	});
});

const stats = (t: number) => ({
	sampledAt: t,
	uptimeMs: 1,
	cpu: { usageNs: t, percent: 1, periods: null, throttledPeriods: null, throttledNs: null },
	memory: { currentBytes: 1, peakBytes: 1, workingSetBytes: 1, anonBytes: 1, fileBytes: 0, limitBytes: null, oomKills: 0 },
	io: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0, readBytesPerSec: 0, writeBytesPerSec: 0, readOpsPerSec: 0, writeOpsPerSec: 0 },
	pids: { current: 1, limit: null },
	pressure: { cpu: null, memory: null, io: null },
	gpuMemoryMiB: null,
});
