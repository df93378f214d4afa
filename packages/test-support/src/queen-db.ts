import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";

// The queen's --db in a test: a SQLite file, or in the postgres tier (whose
// global setup starts one server and sets APIARY_TEST_PG to its URL) a
// PostgreSQL database of its own per file path, so the same test suite runs
// on both stores, and a queen restarted on the same path finds its data.

const created = new Set<string>();

export const onPostgres = () => process.env.APIARY_TEST_PG !== undefined;

/** The --db a queen of this test uses for `path`. */
export async function queenDb(path: string): Promise<string> {
	const server = process.env.APIARY_TEST_PG;
	if (!server) return path;
	const name = `q_${createHash("sha256").update(path).digest("hex").slice(0, 20)}`;
	if (!created.has(name)) {
		const c = new pg.Client({ connectionString: server });
		await c.connect();
		try {
			const { rowCount } = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
			if (!rowCount) await c.query(`CREATE DATABASE ${name}`);
		} finally {
			await c.end();
		}
		created.add(name);
	}
	return server.replace(/\/[^/]*$/, `/${name}`);
}

/** Ids of the durable events after `after` in a queen's store, from SQLite or PostgreSQL. */
export async function storedEventIds(db: string, after: number): Promise<number[]> {
	if (/^postgres(ql)?:\/\//.test(db)) {
		const c = new pg.Client({ connectionString: db });
		await c.connect();
		try {
			return (await c.query<{ id: string }>("SELECT id FROM events WHERE id > $1 ORDER BY id", [after])).rows.map((r) => Number(r.id));
		} finally {
			await c.end();
		}
	}
	const d = new DatabaseSync(db, { readOnly: true });
	try {
		return (d.prepare("SELECT id FROM events WHERE id > ? ORDER BY id").all(after) as { id: number }[]).map((r) => r.id);
	} finally {
		d.close();
	}
}
