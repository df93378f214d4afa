import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Claim, HiveView, PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { makeNet, type TestNet } from "@apiary/test-support/netns";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
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
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Three queens on one PostgreSQL and a hive, each (and the database) in a
// network namespace of this test (issue #21). Partitions are nft drop rules:
// the hive cut off from two of the three queens, then a queen cut off from
// the database while its hive still reaches it. What must hold: the hive is
// never lost and ends up on a queen that answers, placements through any
// queen still work, and nothing is granted twice.

const TOKEN = "chaos-queens-token";

describe("three queens on PostgreSQL under network partitions", () => {
	let net: TestNet;
	let db: Postgres;
	const queens: Daemon[] = [];
	let hive: Daemon;
	const root = newCgroupRoot();
	const dir = tempDir("chaos-queens");
	const tokenFile = join(dir, "token");
	const auth = { authorization: `Bearer ${TOKEN}` };
	const q = <T>(i: number, path: string, init: RequestInit = {}) =>
		json<T>(`${queens[i]!.url}${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) }, signal: AbortSignal.timeout(20_000) });
	const post = <T>(i: number, path: string, body: object) =>
		q<T>(i, path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	const hiveAt = async (i: number) => (await q<HiveView[]>(i, "/v1/hives")).body.find((h) => h.id === "chaos-q");
	const hiveLog = () => hive.err();

	beforeAll(async () => {
		writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
		net = makeNet(["db", "q0", "q1", "q2", "hive"]);
		db = await startPostgres({ host: net.addr("db"), wrap: net.wrap("db") });
		for (let i = 0; i < 3; i++)
			queens.push(
				await startQueen({
					db: db.url,
					sqlite: true,
					host: net.addr(`q${i}`),
					wrap: net.wrap(`q${i}`),
					tokenFile,
					staleAfter: "2s",
					evictAfter: "90s",
					extra: ["--insecure-plaintext"],
				}),
			);
		hive = await startHive({
			queen: queens.map((x) => x.url).join(","),
			name: "chaos-q",
			stateDir: join(dir, "h"),
			cgroupRoot: root,
			interval: "500ms",
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
			tokenFile,
			wrap: net.wrap("hive"),
		});
		for (let i = 0; i < 3; i++) await until(async () => (await hiveAt(i))?.state === "ready", 30_000, `the hive ready at queen ${i}`);
	}, 120_000);
	afterAll(async () => {
		await hive?.stop();
		for (const x of queens) await x.stop();
		await removeCgroupRoot(root);
		await db?.stop();
		const names = net ? ["db", "q0", "q1", "q2", "hive"].map((r) => net.ns(r)) : [];
		net?.destroy();
		removeDir(dir);
		const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
		for (const n of names) expect(left).not.toContain(n);
	});

	it("a hive that reaches only one of three queens moves to it, is never lost, and a placement through another queen reaches it", async () => {
		net.partition("hive", "q0");
		net.partition("hive", "q1");
		// Its queen (q0) stops answering: the hive drops it, q1 does not answer either, q2 does.
		await until(() => /the queen stopped answering; trying the next/.test(hiveLog()), 20_000, "the hive noticing its queen's silence");
		const onQ2 = new RegExp(`connected to the queen[^\\n]*${queens[2]!.url.replaceAll(".", "\\.")}`);
		await until(async () => onQ2.test(hiveLog()) && (await hiveAt(2))?.state === "ready", 40_000, "the hive on q2");
		await until(async () => (await hiveAt(0))?.state === "ready", 20_000, "q0 seeing it ready again, through the database");
		// q0 cannot reach the hive; it relays the placement to q2, which can.
		const placed = await post<PlacementAnswer>(0, "/v1/workers", { id: "via-q0", command: ["sleep", "120"], gpus: { count: 1 } });
		expect(placed.status, JSON.stringify(placed.body)).toBe(201);
		await until(async () => (await q<QueenWorkerView>(1, "/v1/workers/via-q0")).body.state === "running", 15_000, "the worker seen by q1");
		// Stale for a while at its old queen, never lost: no eviction of the worker it ran.
		expect((await loggedEvents(queens[1]!.url, "hive.lost,worker.evicted", 800, auth)).map((e) => e.type)).toEqual([]);
		net.heal("hive");
	}, 90_000);

	it("a queen cut off from PostgreSQL while its hive reaches it: it stops acknowledging, the hive moves, nothing is granted twice, and it exits", async () => {
		// The hive is on q2 now. Cut q2 off from the database.
		net.partition("q2", "db");
		// q2 can grant nothing now: a claim there does not succeed (it cannot take the fleet-wide lock).
		const there = await post<Claim>(2, "/v1/claims", { count: 1, ttlSeconds: 600, holder: "cut-off" }).catch((e) => ({ status: 0, body: String(e) }));
		expect(there.status).not.toBe(201);
		// Its acks stop (an ack follows a commit): the hive moves to the next queen, q0.
		await until(() => (hiveLog().match(/the queen stopped answering; trying the next/g) ?? []).length >= 2, 30_000, "the hive leaving q2");
		await until(async () => (await hiveAt(0))?.state === "ready", 30_000, "the hive ready through q0");
		// The GPUs: one held by via-q0; the other 7 go to one claim at q0, and not one more.
		const all = await post<Claim>(0, "/v1/claims", { count: 7, ttlSeconds: 600, holder: "after" });
		expect(all.status, JSON.stringify(all.body)).toBe(201);
		expect((await post<Claim>(0, "/v1/claims", { count: 1, ttlSeconds: 600, holder: "one-more" })).status).toBe(409);
		// q2 gives up on its database as operations.md says (30 s of failed commits) and exits; systemd would start it again.
		await until(() => queens[2]!.proc.exitCode !== null, 60_000, "q2 exiting");
		expect(queens[2]!.proc.exitCode).toBe(1);
		expect(queens[2]!.err()).toMatch(/committing the queen's changes failed|the connection this queen listens on was lost/);
		net.heal("q2");
		// Nothing it held was given to two: the claims the fleet holds cover 8 distinct GPUs.
		const claims = (await q<Claim[]>(1, "/v1/claims")).body;
		const gpus = claims.flatMap((c) => c.gpus.map((g) => `${g.hiveId}/${g.uuid}`));
		expect(new Set(gpus).size).toBe(gpus.length);
		expect(gpus).toHaveLength(8);
		const v = (await q<QueenWorkerView>(1, "/v1/workers/via-q0")).body;
		expect(v.state).toBe("running");
	}, 120_000);
});
