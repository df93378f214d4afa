import { existsSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { exitedWorker, FakeHive, gpu, worker } from "@apiary/test-support/fake-hive";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { json, removeDir, runCli, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `queen migrate`: a real queen's SQLite file (written by a real queen
// daemon, fed by a simulated hive over its socket) copied into a real
// PostgreSQL server, row for row, event ids kept.
describe("queen migrate --from queen.db --to postgres://…", () => {
	let server: Postgres;
	let dir: string;
	let dbFile: string;
	const dbUrl = (name: string) => server.url.replace(/\/postgres$/, `/${name}`);
	const query = async <T extends pg.QueryResultRow>(name: string, sql: string) => {
		const c = new pg.Client({ connectionString: dbUrl(name) });
		await c.connect();
		try {
			return (await c.query<T>(sql)).rows;
		} finally {
			await c.end();
		}
	};
	const createDb = (name: string) => query("postgres", `CREATE DATABASE ${name}`);

	beforeAll(async () => {
		server = await startPostgres();
		dir = tempDir("migrate");
		dbFile = join(dir, "queen.db");
		// A fleet's worth of state from a real queen: a hive with GPUs, a running
		// and an exited worker (with usage: a right-sizing run), a claim, events.
		const queen = await startQueen({ db: dbFile, staleAfter: "30s", evictAfter: "60s", sqlite: true });
		try {
			const fh = new FakeHive(queen.url, "mig-hive", { gpus: [gpu(0), gpu(1)] });
			await fh.opened();
			fh.hello();
			const seq = fh.heartbeat([worker("runner", { labels: { suite: "api" } })]);
			await until(() => fh.acks.includes(seq), 5000, "heartbeat acked");
			const done = exitedWorker("done", {
				startedAt: Date.parse("2026-11-30T10:00:00Z"),
				durationMs: 60_000,
				peakBytes: 300 << 20,
				cores: 0.5,
				profile: null,
				labels: { suite: "api" },
				limits: { cpu: 1, memoryBytes: 1 << 30, pids: null, timeoutMs: null },
			});
			fh.send({ type: "event", seq: seq + 1, event: "worker.exited", worker: done });
			await until(() => fh.acks.includes(seq + 1), 5000, "exit acked");
			const claim = await json(`${queen.url}/v1/claims`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ count: 1, ttlSeconds: 3600, holder: "ci-42" }),
			});
			expect(claim.status).toBe(201);
			// A credential too: its hash must reach the new database, or every token would stop working.
			const token = await json(`${queen.url}/v1/tokens`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ role: "read", name: "dashboard" }),
			});
			expect(token.status).toBe(201);
			fh.close();
		} finally {
			await queen.stop();
		}
	}, 120_000);
	afterAll(async () => {
		await server?.stop();
		if (dir) removeDir(dir);
	});

	it("copies every table and the event log with its ids into an empty database, and the counter goes on from the last id", async () => {
		await createDb("fleet");
		const out = await runCli("queen", ["migrate", "--from", dbFile, "--to", dbUrl("fleet")]);
		expect(out.stderr).toBe("");
		expect(out.code).toBe(0);

		const src = new DatabaseSync(dbFile, { readOnly: true });
		const rows = (sql: string) => src.prepare(sql).all() as Record<string, unknown>[];
		try {
			const hives = rows("SELECT id, instance_id, state, info FROM hives ORDER BY id");
			const workers = rows("SELECT hive_id, id, state, info FROM workers ORDER BY hive_id, id");
			const exits = rows("SELECT hive_id, worker_id, started_at, record FROM exits ORDER BY worker_id");
			const gpus = rows("SELECT hive_id, uuid, info FROM gpus ORDER BY uuid");
			const claims = rows("SELECT id, holder, gpus FROM claims");
			const runs = rows("SELECT key, run FROM runs ORDER BY seq");
			const events = rows("SELECT id, type, hive_id, worker_id, data FROM events ORDER BY id");
			// What the queen wrote, so the comparison below is not of two empty sets.
			expect([hives.length, gpus.length, claims.length, exits.length, runs.length]).toEqual([1, 2, 1, 1, 1]);
			expect(workers.map((w) => w.id)).toEqual(["done", "runner"]);
			expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["hive.joined", "worker.spawned", "worker.exited", "claim.created"]));
			expect(out.stdout).toBe(
				`copied ${dbFile} into ${dbUrl("fleet")}: 1 hives, 2 workers, 1 exit records, 2 GPUs, 1 claims, 1 runs, 1 tokens, ${events.length} events (last id ${events.at(-1)!.id})\n`,
			);

			const parsed = (r: Record<string, unknown>[], col: string) => r.map((x) => ({ ...x, [col]: JSON.parse(x[col] as string) }));
			expect(await query("fleet", "SELECT id, instance_id, state, info FROM hives ORDER BY id")).toEqual(parsed(hives, "info"));
			expect(await query("fleet", "SELECT hive_id, id, state, info FROM workers ORDER BY hive_id, id")).toEqual(parsed(workers, "info"));
			expect(await query("fleet", "SELECT hive_id, worker_id, started_at, record FROM exits ORDER BY worker_id")).toEqual(parsed(exits, "record"));
			expect(await query("fleet", "SELECT hive_id, uuid, info FROM gpus ORDER BY uuid")).toEqual(parsed(gpus, "info"));
			expect(await query("fleet", "SELECT id, holder, gpus FROM claims")).toEqual(parsed(claims, "gpus"));
			expect(await query("fleet", "SELECT key, run FROM runs ORDER BY seq")).toEqual(parsed(runs, "run"));
			expect(await query("fleet", "SELECT id, role, name, hash FROM tokens")).toEqual(rows("SELECT id, role, name, hash FROM tokens"));
			expect(rows("SELECT id FROM tokens")).toHaveLength(1);
			const pgEvents = await query<{ id: string }>("fleet", "SELECT id, type, hive_id, worker_id, data FROM events ORDER BY id");
			expect(pgEvents.map((e) => ({ ...e, id: Number(e.id) }))).toEqual(parsed(events, "data"));
			// Times are the same instants (timestamptz now, ISO text before).
			const [h] = await query<{ last_seen_at: Date | null }>("fleet", "SELECT last_seen_at FROM hives");
			expect(h!.last_seen_at?.toISOString() ?? null).toBe((rows("SELECT last_seen_at FROM hives")[0]!.last_seen_at as string | null) ?? null);
			expect(await query("fleet", "SELECT last_id FROM event_counter")).toEqual([{ last_id: String(events.at(-1)!.id) }]);
		} finally {
			src.close();
		}
	});

	it("refuses a database that already holds a fleet (exit 2, nothing written), a --to that is not PostgreSQL and a --from that does not exist (exit 2)", async () => {
		await createDb("twice");
		expect((await runCli("queen", ["migrate", "--from", dbFile, "--to", dbUrl("twice")])).code).toBe(0);
		const before = await query(
			"twice",
			"SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM workers) AS workers, (SELECT last_id FROM event_counter) AS last",
		);
		const again = await runCli("queen", ["migrate", "--from", dbFile, "--to", dbUrl("twice")]);
		expect(again.code).toBe(2);
		expect(again.stderr).toBe(`queen migrate: --to ${dbUrl("twice")}: the target database already holds a fleet: migrate into an empty database\n`);
		expect(
			await query(
				"twice",
				"SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM workers) AS workers, (SELECT last_id FROM event_counter) AS last",
			),
		).toEqual(before);

		const notPg = await runCli("queen", ["migrate", "--from", dbFile, "--to", "mysql://root@127.0.0.1/x"]);
		expect([notPg.code, notPg.stderr]).toEqual([2, 'queen migrate: --to: "mysql://root@127.0.0.1/x" is not a postgres:// or postgresql:// URL\n']);
		await createDb("untouched");
		const missing = join(dir, "nope.db");
		const noFile = await runCli("queen", ["migrate", "--from", missing, "--to", dbUrl("untouched")]);
		expect([noFile.code, noFile.stderr]).toEqual([2, `queen migrate: --from: no database at ${missing}\n`]);
		expect(existsSync(missing)).toBe(false);
		// Not even the schema: the file was checked before connecting.
		expect(await query("untouched", "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'")).toEqual([{ n: "0" }]);
		const noTo = await runCli("queen", ["migrate", "--from", dbFile]);
		expect([noTo.code, noTo.stderr]).toEqual([2, "queen migrate: --to is required: the PostgreSQL database to copy into (postgres://…)\n"]);
	});
});
