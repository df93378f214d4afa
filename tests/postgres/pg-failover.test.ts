import { join } from "node:path";
import type { Claim, PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { type PostgresPair, startPostgresPair } from "@apiary/test-support/postgres";
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

// A PostgreSQL failover (issue #21): a primary with a synchronous streaming
// standby, the queen given both in libpq's multi-host form with the standby
// FIRST (so target_session_attrs=read-write has to skip it). The primary is
// killed at once and the standby promoted: the queen, which can no longer hear
// the other queens' changes, exits as docs/operations.md says; started again
// (as systemd does) with the same --db it finds the new primary by itself,
// and nothing it had acknowledged is lost: claims, a placement (and its
// idempotency key), an exit record, the events.
describe("a PostgreSQL primary killed and its synchronous standby promoted", () => {
	let pair: PostgresPair;
	let db = "";
	let queen: Daemon;
	let hive: Daemon;
	const dir = tempDir("pg-failover");
	const root = newCgroupRoot();
	const post = <T>(path: string, body: object) =>
		json<T>(`${queen.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

	beforeAll(async () => {
		pair = await startPostgresPair();
		db = `postgres://postgres@127.0.0.1:${pair.standbyPort},127.0.0.1:${pair.primaryPort}/postgres?target_session_attrs=read-write&connect_timeout=2`;
		queen = await startQueen({ db, sqlite: true, staleAfter: "5s", evictAfter: "120s" });
		hive = await startHive({
			queen: queen.url,
			name: "pgf",
			stateDir: join(dir, "h"),
			cgroupRoot: root,
			interval: "500ms",
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
		});
		await until(async () => (await json<unknown[]>(`${queen.url}/v1/gpus?free=true`)).body.length === 8, 30_000, "the hive's GPUs");
	}, 120_000);
	afterAll(async () => {
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		await pair?.stop();
		removeDir(dir);
	});

	it("the queen skips the standby listed first, and after the failover finds the promoted one: nothing acknowledged is lost", async () => {
		expect(queen.err()).toMatch(/using this host of --db.*"host":"127\.0\.0\.1:\d+"/);
		expect(queen.err()).toContain(`"host":"127.0.0.1:${pair.primaryPort}"`);
		// Acknowledged before the failover: three claims, a keyed placement still running, a worker that ended.
		const claims: string[] = [];
		for (let i = 0; i < 3; i++) {
			const c = await post<Claim>("/v1/claims", { count: 1, ttlSeconds: 3600, holder: `ci-${i}` });
			expect(c.status).toBe(201);
			claims.push(c.body.id);
		}
		const placed = await post<PlacementAnswer>("/v1/workers", { id: "long", command: ["sleep", "300"], gpus: { count: 1 }, idempotencyKey: "before-failover" });
		expect(placed.status).toBe(201);
		expect((await post<PlacementAnswer>("/v1/workers", { id: "short", command: ["true"] })).status).toBe(201);
		await until(async () => (await json<QueenWorkerView>(`${queen.url}/v1/workers/short`)).body.state === "exited", 15_000, "short's exit record");
		// The lifecycle log (samples, worker.updated, are not kept: they carry the id of the event before them).
		const logged = async () => (await loggedEvents(queen.url, "*")).filter((e) => e.type !== "worker.updated");
		const before = await logged();
		expect(before.length).toBeGreaterThan(5);

		pair.killPrimary();
		pair.promote();
		// It listened on the primary: it cannot know the other queens' changes now, so it stops (systemd restarts it).
		await until(() => queen.proc.exitCode !== null, 30_000, "the queen to exit");
		expect(queen.proc.exitCode).toBe(1);
		expect(queen.err()).toMatch(/the connection this queen listens on was lost/);
		const port = Number(new URL(queen.url).port);
		queen = await startQueen({ db, sqlite: true, staleAfter: "5s", evictAfter: "120s", port });
		// The same --db: now the standby (listed first) is the primary.
		expect(queen.err()).toContain(`"host":"127.0.0.1:${pair.standbyPort}"`);
		// Back here, not only ready in the row the queen before it wrote.
		await until(
			async () => {
				const h = (await json<{ state: string; connected: boolean }[]>(`${queen.url}/v1/hives`)).body[0];
				return h?.state === "ready" && h.connected;
			},
			30_000,
			"the hive back",
		);

		// Every acknowledged claim, the placement and its GPU, the exit record (once), every event.
		const held = (await json<Claim[]>(`${queen.url}/v1/claims`)).body.map((c) => c.id);
		for (const id of claims) expect(held).toContain(id);
		const long = (await json<QueenWorkerView>(`${queen.url}/v1/workers/long`)).body;
		expect(long.state).toBe("running");
		expect(long.gpus).toEqual(placed.body.gpus);
		const again = await post<PlacementAnswer>("/v1/workers", { id: "long", command: ["sleep", "300"], gpus: { count: 1 }, idempotencyKey: "before-failover" });
		expect(again.body).toEqual(placed.body); // the key's first answer, not a second worker
		const shorts = (await json<QueenWorkerView[]>(`${queen.url}/v1/workers?state=exited`)).body.filter((w) => w.id === "short");
		expect(shorts.map((w) => w.exit?.exitCode)).toEqual([0]);
		const after = await logged();
		const byId = new Map(after.map((e) => [e.id, e.type]));
		for (const e of before) expect(byId.get(e.id), `event ${e.id} (${e.type})`).toBe(e.type);
		// No GPU given twice: 3 claims and the placement hold 4 of 8; the new primary takes writes.
		expect((await json<unknown[]>(`${queen.url}/v1/gpus?free=true`)).body).toHaveLength(4);
		expect((await post<Claim>("/v1/claims", { count: 4, ttlSeconds: 60, holder: "after" })).status).toBe(201);
		expect((await post<Claim>("/v1/claims", { count: 1, ttlSeconds: 60, holder: "one-too-many" })).status).toBe(409);
	}, 120_000);
});
