import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Claim, PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { makeNet, type TestNet } from "@apiary/test-support/netns";
import {
	type Daemon,
	FAKE_SMI,
	json,
	loggedEvents,
	newCgroupRoot,
	removeCgroupRoot,
	removeDir,
	startHive,
	startQueen,
	tempDir,
} from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";

// A hive cut off from its queen by a real network partition (issue #21): the
// queen and the hive each in a network namespace of this test, joined by a
// bridge; the partition is nft drop rules in the hive's namespace (both ways,
// every packet), the heal their removal. Checked against what must hold: the
// hive's workers run on untouched, exit records made meanwhile arrive exactly
// once, and no GPU is given to anyone else while a worker holds it.

const TOKEN = "chaos-partition-token";

describe("a hive partitioned from its queen", () => {
	let net: TestNet;
	let queen: Daemon;
	let hive: Daemon;
	let root = "";
	const dir = tempDir("chaos-part");
	const tokenFile = join(dir, "token");
	const auth = { authorization: `Bearer ${TOKEN}` };
	const q = <T>(path: string, init: RequestInit = {}) => json<T>(`${queen.url}${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) } });
	const post = <T>(path: string, body: object) => q<T>(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	const alive = (pid: number) => {
		try {
			process.kill(pid, 0);
			return true;
		} catch {
			return false;
		}
	};
	/** The queen's lifecycle log for this hive (samples, worker.updated, are not logged). */
	const events = async () =>
		(await loggedEvents(queen.url, "*", 800, auth)).filter((e) => e.hiveId === "chaos-h" && e.type !== "snapshot" && e.type !== "worker.updated");

	beforeAll(() => {
		writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
		net = makeNet(["queen", "hive"]);
	});
	afterAll(() => {
		const names = net ? [net.ns("queen"), net.ns("hive")] : [];
		net?.destroy();
		removeDir(dir);
		// Every namespace this test made is gone.
		const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
		for (const n of names) expect(left).not.toContain(n);
	});
	const start = async (evictAfter: string) => {
		root = newCgroupRoot();
		queen = await startQueen({
			db: join(dir, `q-${evictAfter}.db`),
			sqlite: true,
			host: net.addr("queen"),
			wrap: net.wrap("queen"),
			tokenFile,
			staleAfter: "2s",
			evictAfter,
			extra: ["--insecure-plaintext"],
		});
		hive = await startHive({
			queen: queen.url,
			name: "chaos-h",
			stateDir: join(dir, `h-${evictAfter}`),
			cgroupRoot: root,
			interval: "500ms",
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
			tokenFile,
			wrap: net.wrap("hive"),
		});
		await until(async () => (await q<unknown[]>("/v1/gpus?free=true")).body.length === 8, 30_000, "the hive's 8 GPUs free at the queen");
	};
	beforeEach(() => {
		root = "";
	});
	afterEach(async () => {
		net.heal("hive");
		await hive?.stop();
		await queen?.stop();
		if (root) await removeCgroupRoot(root);
	});

	it("for less than --evict-after: stale, never lost; its workers untouched; an exit made meanwhile arrives once after the heal", async () => {
		await start("30s");
		const held = await post<PlacementAnswer>("/v1/workers", { id: "held", command: ["sleep", "300"], gpus: { count: 1 } });
		expect(held.status).toBe(201);
		const ends = await post<PlacementAnswer>("/v1/workers", { id: "ends", command: ["sh", "-c", "sleep 4; exit 3"] });
		expect(ends.status).toBe(201);
		const pid = (await q<QueenWorkerView>("/v1/workers/held")).body.pid!;
		expect(alive(pid)).toBe(true);

		net.partition("hive", "queen");
		await until(async () => (await q<{ state: string }[]>("/v1/hives")).body[0]?.state === "stale", 15_000, "the hive stale");
		// Its GPUs are not free at the queen while it cannot be reached (none handed out meanwhile).
		expect((await post<Claim>("/v1/claims", { count: 1, ttlSeconds: 60, holder: "meanwhile" })).status).toBe(409);
		// "ends" exits while the hive is cut off (after 4 s).
		await new Promise((r) => setTimeout(r, 6000));
		expect((await q<{ state: string }[]>("/v1/hives")).body[0]?.state).toBe("stale");
		expect(alive(pid)).toBe(true);
		net.heal("hive");

		await until(async () => (await q<{ state: string }[]>("/v1/hives")).body[0]?.state === "ready", 30_000, "the hive ready again");
		await until(async () => (await q<QueenWorkerView>("/v1/workers/ends")).body.state === "exited", 15_000, "the exit made meanwhile");
		expect((await q<QueenWorkerView>("/v1/workers/ends")).body.exit?.exitCode).toBe(3);
		const h = (await q<QueenWorkerView>("/v1/workers/held")).body;
		expect([h.state, h.gpus, alive(pid)]).toEqual(["running", held.body.gpus, true]);
		const log = await events();
		expect(log.filter((e) => e.type === "hive.lost" || e.type === "worker.evicted")).toEqual([]);
		expect(log.filter((e) => e.type === "worker.exited").map((e) => e.workerId)).toEqual(["ends"]);
		expect(log.map((e) => e.id)).toEqual([...log.map((e) => e.id)].sort((a, b) => a - b));
	}, 90_000);

	it("for longer than --evict-after: lost and evicted at the queen while the worker runs on; after the heal shown again, its GPU held, never given away", async () => {
		await start("6s");
		const held = await post<PlacementAnswer>("/v1/workers", { id: "held", command: ["sleep", "300"], gpus: { count: 1 } });
		expect(held.status).toBe(201);
		const pid = (await q<QueenWorkerView>("/v1/workers/held")).body.pid!;

		net.partition("hive", "queen");
		await until(async () => (await q<{ state: string }[]>("/v1/hives")).body[0]?.state === "lost", 20_000, "the hive lost");
		await until(async () => (await q<QueenWorkerView>("/v1/workers/held")).body.state === "evicted", 10_000, "its worker evicted at the queen");
		expect(alive(pid)).toBe(true); // the host still runs it
		// A lost hive's GPUs are offered to no one.
		expect((await post<Claim>("/v1/claims", { count: 1, ttlSeconds: 60, holder: "meanwhile" })).status).toBe(409);
		net.heal("hive");

		await until(async () => (await q<{ state: string }[]>("/v1/hives")).body[0]?.state === "ready", 30_000, "the hive back");
		await until(async () => (await q<QueenWorkerView>("/v1/workers/held")).body.state === "running", 15_000, "its worker shown again");
		const h = (await q<QueenWorkerView>("/v1/workers/held")).body;
		expect([h.gpus, alive(pid)]).toEqual([held.body.gpus, true]);
		// Its GPU is held again: 7 free, and a claim for all 8 is refused.
		await until(async () => (await q<unknown[]>("/v1/gpus?free=true")).body.length === 7, 15_000, "7 GPUs free");
		expect((await post<Claim>("/v1/claims", { count: 8, ttlSeconds: 60, holder: "all" })).status).toBe(409);
		const log = await events();
		const types = log.filter((e) => e.workerId === "held" || e.type.startsWith("hive.")).map((e) => `${e.type}${e.workerId ? ` ${e.workerId}` : ""}`);
		// What an operator's stream says: lost and evicted, then back with the worker spawned again (same id, same GPU).
		expect(types).toEqual(["hive.joined", "worker.spawned held", "hive.stale", "worker.evicted held", "hive.lost", "hive.joined", "worker.spawned held"]);
	}, 90_000);
});
