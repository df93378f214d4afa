import { DatabaseSync } from "node:sqlite";
import type pg from "pg";
import { migrate } from "./schema.ts";

// `queen migrate --from queen.db --to postgres://…`: a stopped queen's SQLite
// file copied into an empty PostgreSQL database, in one transaction, so a
// fleet moves to several queens with its history: hives, workers, exit
// records, GPUs, claims, right-sizing runs and the event log with its ids
// (a subscriber's Last-Event-ID still resumes on the new queens).

/** Rows copied per table. */
export interface Copied {
	hives: number;
	workers: number;
	exits: number;
	gpus: number;
	claims: number;
	runs: number;
	tokens: number;
	events: number;
	/** The event counter's value afterwards: the last id copied. */
	lastEventId: number;
}

/** The target was not empty: nothing was written. */
export class TargetNotEmpty extends Error {
	override name = "TargetNotEmpty";
}

const CHUNK = 1000;

/** Inserts rows given as objects through jsonb_to_recordset, CHUNK at a time: one round trip per chunk. */
async function insertAll(client: pg.ClientBase, table: string, columns: string, rows: readonly object[]): Promise<void> {
	const names = columns
		.split(",")
		.map((c) => c.trim().split(" ")[0])
		.join(", ");
	for (let i = 0; i < rows.length; i += CHUNK) {
		await client.query(`INSERT INTO ${table} (${names}) SELECT ${names} FROM jsonb_to_recordset($1::jsonb) AS x(${columns})`, [
			JSON.stringify(rows.slice(i, i + CHUNK)),
		]);
	}
}

/** The target's rows of fleet state, to refuse a database that already holds one. */
async function heldRows(client: pg.ClientBase): Promise<number> {
	const { rows } = await client.query<{ n: string }>(
		`SELECT (SELECT count(*) FROM hives) + (SELECT count(*) FROM workers) + (SELECT count(*) FROM exits) + (SELECT count(*) FROM claims)
		      + (SELECT count(*) FROM runs) + (SELECT count(*) FROM tokens) + (SELECT count(*) FROM events) + (SELECT last_id FROM event_counter) AS n`,
	);
	return Number(rows[0]!.n);
}

/**
 * Copies the SQLite file at `from` into the database `client` is connected
 * to: migrations first (as a queen's start applies them), then every row in
 * one transaction that also checks the target holds no fleet. Read from one
 * SQLite read transaction, so a copy is consistent even if a queen still
 * writes the file (stop it first, or its later changes are not copied).
 */
export async function copyFromSqlite(from: string, client: pg.ClientBase): Promise<Copied> {
	const src = new DatabaseSync(from, { readOnly: true });
	try {
		src.exec("BEGIN");
		const all = <T>(sql: string) => src.prepare(sql).all() as T[];
		const hives = all<{ id: string; instance_id: string; state: string; last_seen_at: string | null; info: string }>(
			"SELECT id, instance_id, state, last_seen_at, info FROM hives",
		).map((r) => ({ ...r, info: JSON.parse(r.info) }));
		const workers = all<{ hive_id: string; id: string; state: string; info: string }>("SELECT hive_id, id, state, info FROM workers").map((r) => ({
			...r,
			info: JSON.parse(r.info),
		}));
		const exits = all<{ hive_id: string; worker_id: string; started_at: string; record: string }>(
			"SELECT hive_id, worker_id, started_at, record FROM exits",
		).map((r) => ({ ...r, record: JSON.parse(r.record) }));
		const gpus = all<{ hive_id: string; uuid: string; info: string }>("SELECT hive_id, uuid, info FROM gpus").map((r) => ({ ...r, info: JSON.parse(r.info) }));
		const claims = all<{ id: string; holder: string; gpus: string; created_at: string; expires_at: string }>(
			"SELECT id, holder, gpus, created_at, expires_at FROM claims",
		).map((r) => ({ ...r, gpus: JSON.parse(r.gpus) }));
		// Cordons and drains go with their hives; a file from before them has none.
		const hasDrains = all<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'drains'")[0]!.n > 0;
		const drains = hasDrains
			? all<{ hive_id: string; drain: string }>("SELECT hive_id, drain FROM drains").map((r) => ({ ...r, drain: JSON.parse(r.drain) }))
			: [];
		const runs = all<{ seq: number; key: string; run: string }>("SELECT seq, key, run FROM runs ORDER BY seq").map((r) => ({ ...r, run: JSON.parse(r.run) }));
		// Credentials (their hashes) go too, so every token keeps working; a file from before tokens has none.
		const hasTokens = all<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'tokens'")[0]!.n > 0;
		const tokens = hasTokens
			? all<Record<string, string | null>>("SELECT id, role, name, hive, hash, created_at, expires_at, revoked_at, enrolled_by FROM tokens")
			: [];
		// The log is kept as one JSON array per transaction; the PostgreSQL schema has a row per event.
		const events = all<{ events: string }>("SELECT events FROM event_batches ORDER BY first_id").flatMap((b) =>
			(JSON.parse(b.events) as { id: number; type: string; at: string; hiveId?: string | null; workerId?: string | null; data: unknown }[]).map((e) => ({
				id: e.id,
				type: e.type,
				at: e.at,
				hive_id: e.hiveId ?? null,
				worker_id: e.workerId ?? null,
				data: e.data ?? null,
			})),
		);
		src.exec("COMMIT");

		await migrate(client);
		await client.query("BEGIN");
		try {
			// Held until commit: a queen or a second migrate cannot write in between.
			await client.query("LOCK TABLE hives, workers, exits, gpus, claims, runs, tokens, events, event_counter IN EXCLUSIVE MODE");
			const held = await heldRows(client);
			if (held > 0) throw new TargetNotEmpty("the target database already holds a fleet: migrate into an empty database");
			await insertAll(client, "hives", "id text, instance_id text, state text, last_seen_at timestamptz, info jsonb", hives);
			await insertAll(client, "drains", "hive_id text, drain jsonb", drains);
			await insertAll(client, "workers", "hive_id text, id text, state text, info jsonb", workers);
			await insertAll(client, "exits", "hive_id text, worker_id text, started_at text, record jsonb", exits);
			await insertAll(client, "gpus", "hive_id text, uuid text, info jsonb", gpus);
			await insertAll(client, "claims", "id text, holder text, gpus jsonb, created_at timestamptz, expires_at timestamptz", claims);
			await insertAll(client, "runs", "seq bigint, key text, run jsonb", runs);
			if (runs.length > 0) await client.query("SELECT setval(pg_get_serial_sequence('runs', 'seq'), (SELECT max(seq) FROM runs))");
			await insertAll(client, "events", "id bigint, type text, at timestamptz, hive_id text, worker_id text, data jsonb", events);
			await insertAll(
				client,
				"tokens",
				"id text, role text, name text, hive text, hash text, created_at text, expires_at text, revoked_at text, enrolled_by text",
				tokens,
			);
			const lastEventId = events.reduce((m, e) => Math.max(m, e.id), 0);
			await client.query("UPDATE event_counter SET last_id = $1", [lastEventId]);
			await client.query("COMMIT");
			return {
				hives: hives.length,
				workers: workers.length,
				exits: exits.length,
				gpus: gpus.length,
				claims: claims.length,
				runs: runs.length,
				tokens: tokens.length,
				events: events.length,
				lastEventId,
			};
		} catch (err) {
			await client.query("ROLLBACK");
			throw err;
		}
	} finally {
		src.close();
	}
}
