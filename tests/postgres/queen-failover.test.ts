import { join } from "node:path";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Three queens (real daemons) on one real PostgreSQL server and three real
// hives, each listing the queens in a different order: kill -9 a queen.
describe("a queen killed under its hives", () => {
	let server: Postgres;
	let dir: string;
	const queens: Daemon[] = [];
	const hives: Daemon[] = [];
	const roots: string[] = [];
	const db = () => new pg.Client({ connectionString: server.url });

	beforeAll(async () => {
		server = await startPostgres();
		dir = tempDir("qfail");
		for (let i = 0; i < 3; i++) queens.push(await startQueen({ db: server.url, sqlite: true, staleAfter: "3s", evictAfter: "60s" }));
		for (let i = 0; i < 3; i++) {
			const order = [0, 1, 2].map((k) => queens[(i + k) % 3]!.url).join(",");
			const root = newCgroupRoot();
			roots.push(root);
			hives.push(await startHive({ queen: order, name: `hv${i}`, stateDir: join(dir, `h${i}`), cgroupRoot: root, interval: "500ms" }));
		}
	}, 120_000);
	afterAll(async () => {
		for (const h of hives) await h.stop();
		for (const q of queens) await q.stop();
		for (const r of roots) await removeCgroupRoot(r);
		await server?.stop();
		if (dir) removeDir(dir);
	});

	it("its hives are ready on another queen within 5 s, nothing lost or evicted, and an exit made during the move is recorded once", async () => {
		for (const q of queens)
			await until(async () => (await json<{ state: string }[]>(`${q.url}/v1/hives`)).body.filter((h) => h.state === "ready").length === 3, 15_000, "3 ready");
		// A worker on hv0 (connected to queen 0) that ends while its hive moves.
		const spawned = await json(`${hives[0]!.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "mover", command: ["sh", "-c", "sleep 1; exit 7"] }),
		});
		expect(spawned.status).toBe(201);
		await until(async () => (await json(`${queens[1]!.url}/v1/workers/mover`)).body?.state === "running", 5000, "running, seen by another queen");
		const killedAt = performance.now();
		queens[0]!.proc.kill("SIGKILL");
		await queens[0]!.stop();
		await until(
			async () => {
				const h = (await json<{ state: string; connected: boolean }>(`${queens[1]!.url}/v1/hives/hv0`)).body;
				return h.state === "ready" && h.connected;
			},
			5000,
			"hv0 ready on queen 1",
		);
		expect(performance.now() - killedAt).toBeLessThan(5000);
		await until(async () => (await json(`${queens[2]!.url}/v1/hives/hv0`)).body?.state === "ready", 3000, "and on queen 2");
		await until(async () => (await json(`${queens[2]!.url}/v1/workers/mover`)).body?.state === "exited", 10_000, "the exit, on queen 2");
		expect((await json(`${queens[1]!.url}/v1/workers/mover`)).body).toMatchObject({ state: "exited", exit: { exitCode: 7 } });
		await sleep(1500); // a resend would land by now
		const c = db();
		await c.connect();
		try {
			expect((await c.query("SELECT count(*)::int AS n FROM exits WHERE worker_id = 'mover'")).rows[0].n).toBe(1);
			expect((await c.query("SELECT count(*)::int AS n FROM events WHERE type = 'worker.exited' AND worker_id = 'mover'")).rows[0].n).toBe(1);
			expect((await c.query("SELECT count(*)::int AS n FROM events WHERE type IN ('hive.lost', 'worker.evicted')")).rows[0].n).toBe(0);
		} finally {
			await c.end();
		}
	});
});
