import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { until } from "@apiary/test-support/util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type QueenDaemon, startQueenDaemon } from "../../src/daemon.ts";
import { startRenewal } from "../../src/store/pg/renewal.ts";

// A queen's row in `queens` is renewed on a thread of its own (renewal.ts):
// a queen whose loop stalls a few seconds is not taken for gone by the
// others, and one whose loop has stalled past the limit is. The loop stalled
// here is this test's own, held by a busy wait.

/** Holds this thread's event loop for `ms`, as a long batch or a full collection would. */
function stall(ms: number): void {
	const end = performance.now() + ms;
	while (performance.now() < end) {}
}

describe("a queen's liveness row", () => {
	let server: Postgres;
	let db: pg.Client;
	const ageMs = async (id: string) =>
		Number((await db.query("SELECT extract(epoch FROM now() - seen_at) * 1000 AS age FROM queens WHERE id = $1", [id])).rows[0]?.age ?? Number.NaN);

	beforeAll(async () => {
		server = await startPostgres();
		db = new pg.Client({ connectionString: server.url });
		await db.connect();
	}, 120_000);
	afterAll(async () => {
		await db?.end();
		await server?.stop();
	});

	it("is renewed while the queen's loop is held for 4.5 s, past the 3 s after which a silent queen is gone", async () => {
		let queen: QueenDaemon | null = null;
		try {
			queen = await startQueenDaemon({ listen: "127.0.0.1:0", db: server.url, staleAfterMs: 3000, evictAfterMs: 60_000, token: null });
			const ids = (await db.query<{ id: string }>("SELECT id FROM queens")).rows.map((r) => r.id);
			expect(ids).toHaveLength(1);
			await until(async () => (await ageMs(ids[0]!)) < 1500, 5000, "renewed");
			stall(4500);
			// Renewed meanwhile: on the loop, the row would be 4.5 s old now.
			expect(await ageMs(ids[0]!)).toBeLessThan(2500);
		} finally {
			await queen?.close();
		}
		// A clean stop removes the row at once.
		expect((await db.query("SELECT id FROM queens")).rows).toHaveLength(0);
	}, 60_000);

	it("is no longer renewed once the loop has stalled past the limit, and is again once it runs", async () => {
		await db.query("INSERT INTO queens (id, seen_at) VALUES ('stalled', now())");
		const renewal = startRenewal({ connectionString: server.url, queenId: "stalled", everyMs: 200, stallMs: 1000, queryTimeoutMs: 3000 });
		try {
			await until(async () => (await ageMs("stalled")) < 500, 5000, "renewed");
			stall(3000);
			// Renewed for the first second or so of the stall, then not: at least 1.5 s old by the end of it.
			expect(await ageMs("stalled")).toBeGreaterThan(1500);
			await until(async () => (await ageMs("stalled")) < 500, 5000, "renewed again");
		} finally {
			await renewal.stop();
		}
	}, 60_000);
});
