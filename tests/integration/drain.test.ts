import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GpuView, HiveView, PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import {
	type Daemon,
	FAKE_SMI,
	json,
	loggedEvents,
	newCgroupRoot,
	removeCgroupRoot,
	removeDir,
	runCli,
	startHive,
	startQueen,
	tempDir,
} from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Cordon and drain end to end (issue #19): a queen and two hives of eight
// (fake) A100s each, real workers placed through the queen, the state kept
// across a queen restart and a hive restart. In the postgres tier the same
// file runs with the queen on PostgreSQL.

describe("cordon and drain", () => {
	const dir = tempDir("drain");
	const roots: string[] = [];
	const db = join(dir, "queen.db");
	let queen: Daemon;
	const hives = new Map<string, Daemon>();
	const hive = async (name: string) => {
		const root = newCgroupRoot();
		roots.push(root);
		const h = await startHive({
			queen: queen.url,
			name,
			stateDir: join(dir, name),
			cgroupRoot: root,
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
			extra: ["--label", "pool=dr"],
		});
		hives.set(name, h);
		return h;
	};
	const req = (method: string, path: string, body?: object) =>
		json(`${queen.url}${path}`, {
			method,
			...(body ? { headers: { "content-type": "application/json" }, body: JSON.stringify(body) } : {}),
		});
	const place = (body: object) =>
		req("POST", "/v1/workers", { constraints: { pool: "dr" }, ...body }) as Promise<{ status: number; body: PlacementAnswer & { message: string } }>;
	const hiveView = async (id: string) => (await req("GET", `/v1/hives/${id}`)).body as HiveView;
	const worker = async (id: string, hiveId: string) => (await req("GET", `/v1/workers/${id}?hive=${hiveId}`)).body as QueenWorkerView;
	const events = (types: string) => loggedEvents(queen.url, types, 1500);

	beforeAll(async () => {
		queen = await startQueen({ db, evictAfter: "90s" });
		await Promise.all([hive("dr-a"), hive("dr-b")]);
		await until(async () => (await req("GET", "/v1/gpus?free=true")).body.length === 16, 45_000, "both hives' GPUs free");
	}, 90_000);
	afterAll(async () => {
		for (const h of hives.values()) await h.stop();
		await queen?.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	it("a cordoned hive takes no placement and its GPUs are neither free nor claimable; its running worker goes on; the 409 names it", async () => {
		const before = await place({ id: "dr-keep", hive: "dr-a", gpus: { count: 1 }, command: ["sleep", "300"] });
		expect(before.status).toBe(201);
		const r = await runCli("queen", ["cordon", "dr-a", "--reason", "kernel update", "--queen", queen.url]);
		expect(r.code, r.stderr).toBe(0);
		expect(r.stdout).toMatch(/hive dr-a is cordoned \(kernel update\)/);
		const h = await hiveView("dr-a");
		expect(h.drain).toMatchObject({ state: "cordoned", reason: "kernel update", deadline: null });
		expect(Date.parse(h.drain!.at)).toBeGreaterThan(Date.now() - 60_000);
		const free = (await req("GET", "/v1/gpus?free=true")).body as GpuView[];
		expect(free.filter((g) => g.hiveId === "dr-a")).toEqual([]);
		expect(free.filter((g) => g.hiveId === "dr-b")).toHaveLength(8);
		// Claimable: only dr-b's eight; nine on one hive cannot be had.
		const claim = await req("POST", "/v1/claims", { holder: "ci", count: 8, sameHive: true, ttlSeconds: 60 });
		expect(claim.status).toBe(201);
		expect(claim.body.gpus.every((g: { hiveId: string }) => g.hiveId === "dr-b")).toBe(true);
		expect((await req("DELETE", `/v1/claims/${claim.body.id}`)).status).toBe(200);
		const there = await place({ hive: "dr-a", command: ["true"] });
		expect(there.status).toBe(409);
		expect(there.body.message).toMatch(/hive dr-a is cordoned \(kernel update\)/);
		const gpuThere = await place({ hive: "dr-a", gpus: { count: 1 }, command: ["true"] });
		expect(gpuThere.status).toBe(409);
		expect(gpuThere.body.message).toMatch(/hive dr-a is cordoned/);
		// Anywhere in the pool: dr-b.
		const elsewhere = await place({ gpus: { count: 2 }, command: ["true"] });
		expect(elsewhere.status).toBe(201);
		expect(elsewhere.body.hiveId).toBe("dr-b");
		expect((await worker("dr-keep", "dr-a")).state).toBe("running");
		const hivesOut = await runCli("queen", ["hives", "--queen", queen.url]);
		expect(hivesOut.stdout).toMatch(/dr-a\s+ready\s+cordoned \(kernel update\)/);
		expect(hivesOut.stdout).toMatch(/dr-b\s+ready\s+schedulable/);
		const metrics = await (await fetch(`${queen.url}/metrics`)).text();
		expect(metrics).toMatch(/apiary_queen_hive_drain\{hive="dr-a",state="cordoned"\} 1/);
		expect(metrics).not.toMatch(/apiary_queen_hive_drain\{hive="dr-b"/);
		const ev = await events("hive.cordoned");
		expect(ev.some((e) => e.hiveId === "dr-a" && (e.data as { drain: { reason: string } }).drain.reason === "kernel update")).toBe(true);
	});

	it("bad input is a 4xx naming the field or the hive, and changes nothing", async () => {
		const neg = await req("POST", "/v1/hives/dr-b/drain", { deadlineSeconds: -1 });
		expect(neg.status).toBe(400);
		expect(neg.body.message).toMatch(/deadlineSeconds/);
		const extra = await req("POST", "/v1/hives/dr-b/cordon", { reason: "x", force: true });
		expect(extra.status).toBe(400);
		expect((await req("POST", "/v1/hives/nope/cordon", {})).status).toBe(404);
		expect((await hiveView("dr-b")).drain).toBeNull();
		const cli = await runCli("queen", ["drain", "dr-b", "--deadline", "soon", "--queen", queen.url]);
		expect(cli.code).toBe(2);
		expect(cli.stderr).toMatch(/--deadline/);
		const unknown = await runCli("queen", ["cordon", "nope", "--queen", queen.url]);
		expect(unknown.code).toBe(2);
		expect(unknown.stderr).toMatch(/no hive nope/);
	});

	it("the cordon survives a queen restart and a hive restart", async () => {
		await queen.stop();
		queen = await startQueen({ db, evictAfter: "90s", port: Number(new URL(queen.url).port) });
		await until(async () => (await hiveView("dr-a"))?.state === "ready", 20_000, "dr-a back");
		expect((await hiveView("dr-a")).drain).toMatchObject({ state: "cordoned", reason: "kernel update" });
		const a = hives.get("dr-a")!;
		await a.stop();
		hives.set(
			"dr-a",
			await startHive({
				queen: queen.url,
				name: "dr-a",
				stateDir: join(dir, "dr-a"),
				cgroupRoot: roots[0]!,
				nvidiaSmi: FAKE_SMI("a100x8-idle"),
				extra: ["--label", "pool=dr"],
			}),
		);
		await until(async () => (await hiveView("dr-a"))?.state === "ready", 20_000, "dr-a restarted");
		// dr-b reconnects to the restarted queen on its own backoff: the next tests place on it.
		await until(async () => (await hiveView("dr-b"))?.state === "ready", 20_000, "dr-b back");
		expect((await hiveView("dr-a")).drain).toMatchObject({ state: "cordoned", reason: "kernel update" });
		expect((await req("GET", "/v1/gpus?free=true")).body.filter((g: GpuView) => g.hiveId === "dr-a")).toEqual([]);
	});

	it("a placement waiting when its hive is cordoned goes to another hive, never to the cordoned one", async () => {
		// dr-b full (8 of 8), dr-a cordoned with 7 idle GPUs: a request for 8 waits.
		const hold = await place({ id: "dr-hold", hive: "dr-b", gpus: { count: 8 }, command: ["sleep", "300"] });
		expect(hold.status).toBe(201);
		const waiting = place({ id: "dr-waiter", gpus: { count: 7 }, waitMs: 30_000, command: ["true"] });
		await until(async () => (await req("GET", "/v1/placements")).body.pending.some((p: { id: string }) => p.id === "dr-waiter"), 10_000, "queued");
		// dr-a's own worker ends: its GPUs are idle, but it stays cordoned.
		expect((await req("DELETE", "/v1/workers/dr-keep?hive=dr-a")).status).toBe(200);
		await new Promise((r) => setTimeout(r, 1500));
		expect((await req("GET", "/v1/placements")).body.pending.some((p: { id: string }) => p.id === "dr-waiter")).toBe(true);
		expect((await req("DELETE", "/v1/workers/dr-hold?hive=dr-b")).status).toBe(200);
		const placed = await waiting;
		expect(placed.status).toBe(201);
		expect(placed.body.hiveId).toBe("dr-b");
	});

	it("drain: workers go on until the deadline, then are stopped gracefully with reason drained; the hive is drained; drain --wait returns then; uncordon lifts it", async () => {
		// Uncordoned, then a worker that ends gracefully on SIGTERM.
		expect((await runCli("queen", ["uncordon", "dr-a", "--queen", queen.url])).stdout).toMatch(/hive dr-a is schedulable/);
		expect((await hiveView("dr-a")).drain).toBeNull();
		const script = join(dir, "graceful.sh");
		writeFileSync(script, "trap 'echo bye; exit 0' TERM\nwhile :; do sleep 0.1; done\n");
		const w = await place({ id: "dr-long", hive: "dr-a", gpus: { count: 1 }, command: ["sh", script] });
		expect(w.status).toBe(201);
		const t0 = Date.now();
		const drain = runCli("queen", ["drain", "dr-a", "--deadline", "5s", "--reason", "rack move", "--wait", "--queen", queen.url]);
		await until(async () => (await hiveView("dr-a")).drain?.state === "draining", 10_000, "draining");
		const h = await hiveView("dr-a");
		expect(Date.parse(h.drain!.deadline!) - Date.parse(h.drain!.at)).toBe(5000);
		// Before the deadline: it runs on, and new work goes elsewhere.
		const meanwhile = await place({ gpus: { count: 1 }, command: ["true"] });
		expect(meanwhile.body.hiveId).toBe("dr-b");
		expect((await worker("dr-long", "dr-a")).state).toBe("running");
		const r = await drain;
		expect(r.code, r.stderr).toBe(0);
		expect(Date.now() - t0).toBeGreaterThanOrEqual(4500);
		expect(r.stdout).toMatch(/hive dr-a is drained \(rack move\)/);
		const ended = await worker("dr-long", "dr-a");
		expect(ended.state).toBe("exited");
		expect(ended.exit).toMatchObject({ reason: "drained", graceful: true, exitCode: 0 });
		expect(ended.stoppedBy?.name).toBeTruthy();
		const ev = await events("hive.draining,hive.drained,hive.uncordoned");
		const mine = ev.filter((e) => e.hiveId === "dr-a").map((e) => e.type);
		expect(mine.slice(-3)).toEqual(["hive.uncordoned", "hive.draining", "hive.drained"]);
		const metrics = await (await fetch(`${queen.url}/metrics`)).text();
		expect(metrics).toMatch(/apiary_queen_hive_drain\{hive="dr-a",state="drained"\} 1/);
		// Drained is durable too, and a placement there says so.
		expect((await place({ hive: "dr-a", command: ["true"] })).body.message).toMatch(/hive dr-a is drained \(rack move\)/);
		expect((await req("POST", "/v1/hives/dr-a/uncordon")).body.drain).toBeNull();
		const back = await place({ hive: "dr-a", gpus: { count: 1 }, command: ["true"] });
		expect(back.status).toBe(201);
	});

	it("a drain of a hive with nothing running is drained at once", async () => {
		const r = await req("POST", "/v1/hives/dr-a/drain", { deadlineSeconds: 600 });
		expect(r.status).toBe(200);
		await until(async () => (await hiveView("dr-a")).drain?.state === "drained", 5000, "drained");
		expect((await req("POST", "/v1/hives/dr-a/uncordon")).status).toBe(200);
	});
});
