import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendEvents, MIGRATIONS, migrate } from "../../src/store/pg/schema.ts";

// Against a real PostgreSQL server started for this file: what several
// queens on one database rely on before any of them serves a request.
describe("the queen's PostgreSQL schema", () => {
	let server: Postgres;
	const clients: pg.Client[] = [];
	const client = async () => {
		const c = new pg.Client({ connectionString: server.url });
		await c.connect();
		clients.push(c);
		return c;
	};
	beforeAll(async () => {
		server = await startPostgres();
	}, 120_000);
	afterAll(async () => {
		for (const c of clients) await c.end().catch(() => {});
		await server?.stop();
	});

	it("two queens starting at once on an empty database both come up, and each migration is applied once", async () => {
		const [a, b] = await Promise.all([client(), client()]);
		const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
		const all = MIGRATIONS.map((_, i) => i + 1);
		// One of them applied everything, the other nothing (it waited on the lock, then found them done).
		expect([ra, rb].sort((x, y) => y.length - x.length)).toEqual([all, []]);
		const { rows } = await a.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
		expect(rows.map((r) => r.version)).toEqual(all);
		expect(await migrate(await client())).toEqual([]);
		expect((await a.query("SELECT last_id FROM event_counter")).rows).toEqual([{ last_id: "0" }]);
	});

	it("event ids come from the committing transaction: a second writer waits, ids are gapless and visible in commit order; a rollback leaves no gap", async () => {
		const [a, b, reader] = await Promise.all([client(), client(), client()]);
		const seen: number[] = [];
		const poll = async () => {
			const last = seen.at(-1) ?? 0;
			for (const r of (await reader.query<{ id: string }>("SELECT id FROM events WHERE id > $1 ORDER BY id", [last])).rows) seen.push(Number(r.id));
		};
		const ev = (type: string) => ({ type, hiveId: "h", workerId: null, data: { n: 1 } });
		await a.query("BEGIN");
		expect(await appendEvents(a, [ev("worker.spawned"), ev("worker.spawned"), ev("worker.spawned")])).toEqual([1, 2, 3]);
		await b.query("BEGIN");
		let bIds: number[] | null = null;
		const bDone = appendEvents(b, [ev("worker.exited"), ev("worker.exited")]).then((ids) => {
			bIds = ids;
		});
		await new Promise((r) => setTimeout(r, 300));
		expect(bIds).toBeNull(); // held by A's row lock, not handed ids ahead of A's commit
		await poll();
		expect(seen).toEqual([]); // nothing committed yet
		await a.query("COMMIT");
		await bDone;
		expect(bIds).toEqual([4, 5]);
		await poll();
		expect(seen).toEqual([1, 2, 3]);
		await b.query("COMMIT");
		await poll();
		expect(seen).toEqual([1, 2, 3, 4, 5]);
		// A writer that rolls back takes its ids with it.
		await a.query("BEGIN");
		expect(await appendEvents(a, [ev("hive.joined")])).toEqual([6]);
		await a.query("ROLLBACK");
		await a.query("BEGIN");
		expect(await appendEvents(a, [ev("hive.joined")])).toEqual([6]);
		await a.query("COMMIT");
		await poll();
		expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
		const at = (await reader.query<{ ok: boolean }>("SELECT bool_and(at <= now()) AS ok FROM events")).rows[0]!;
		expect(at.ok).toBe(true);
	});
});
