import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type SQLInputValue, type StatementResultingChanges, type StatementSync } from "node:sqlite";
import { sqliteClaims } from "./claims.ts";
import { sqliteShardRuns } from "./shard-runs.ts";
import { sqliteEvents } from "./events.ts";
import { sqliteExits } from "./exits.ts";
import { sqliteGpus } from "./gpus.ts";
import { sqliteHives } from "./hives.ts";
import { sqliteRuns } from "./runs.ts";
import { sqliteAudit } from "./audit.ts";
import { sqliteTokens } from "./tokens.ts";
import type { QueenStore } from "./store.ts";
import { sqliteWorkers } from "./workers.ts";

// Durable state in one SQLite file (WAL). node:sqlite is built into Node 22.5+
// and needs no native build: better-sqlite3 would be compiled by npm against
// the system Node's headers on these machines, not the pinned Node 24.

const SCHEMA = `
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS hives (id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, state TEXT NOT NULL, last_seen_at TEXT, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shard_runs (id TEXT PRIMARY KEY, key TEXT UNIQUE, state TEXT NOT NULL, created_at TEXT NOT NULL, run TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS drains (hive_id TEXT PRIMARY KEY, drain TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workers (hive_id TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, info TEXT NOT NULL, PRIMARY KEY (hive_id, id));
CREATE INDEX IF NOT EXISTS workers_by_id ON workers (id);
CREATE TABLE IF NOT EXISTS exits (hive_id TEXT NOT NULL, worker_id TEXT NOT NULL, started_at TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (hive_id, worker_id, started_at));
CREATE TABLE IF NOT EXISTS gpus (hive_id TEXT NOT NULL, uuid TEXT NOT NULL, info TEXT NOT NULL, PRIMARY KEY (hive_id, uuid));
CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, holder TEXT NOT NULL, gpus TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, run TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT, hive TEXT, hash TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT, enrolled_by TEXT);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT, token_id TEXT, remote TEXT, op TEXT NOT NULL, target TEXT, outcome INTEGER NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS event_batches (first_id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL, events TEXT NOT NULL);
CREATE VIEW IF NOT EXISTS events AS
  SELECT json_extract(e.value, '$.id') AS id, json_extract(e.value, '$.type') AS type, json_extract(e.value, '$.at') AS at,
         json_extract(e.value, '$.hiveId') AS hive_id, json_extract(e.value, '$.workerId') AS worker_id, json_extract(e.value, '$.data') AS data
  FROM event_batches AS b, json_each(b.events) AS e;
`;

/** `PRAGMA application_id` of a queen's file ("APIQ"): what tells it from any other SQLite file. */
export const QUEEN_APPLICATION_ID = 0x41504951;
/** Tables every queen's file has had since the first: a file from before the application id was set is the queen's. */
const QUEEN_TABLES = ["hives", "workers", "exits", "gpus", "claims", "meta", "event_batches"];

/**
 * Refuses a file that is not empty and not a queen's before writing anything
 * to it (the schema, WAL mode): `--db` pointed at another program's database
 * by mistake must leave it byte for byte as it was.
 */
function claimFile(db: DatabaseSync, path: string): void {
	const id = Number((db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id);
	if (id === QUEEN_APPLICATION_ID) return;
	const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name").all() as { name: string }[]).map((r) => r.name);
	const ours = QUEEN_TABLES.every((t) => tables.includes(t));
	if (id !== 0 || (tables.length > 0 && !ours)) {
		const what = id !== 0 ? `application_id ${id}` : `tables ${tables.slice(0, 8).join(", ")}${tables.length > 8 ? ", …" : ""}`;
		throw new Error(`${path} is not a queen's database (${what}): refusing to write to it; give --db a new file or a queen's`);
	}
	db.exec(`PRAGMA application_id = ${QUEEN_APPLICATION_ID}`);
}

/** The SQLite connection the table modules share: cached statements and lazily opened transactions. */
export class SqliteDb {
	readonly db: DatabaseSync;
	private readonly stmts = new Map<string, StatementSync>();
	private depth = 0;
	private open = false;
	/** Transactions that wrote and committed (one that wrote nothing proves nothing of the disk). */
	commits = 0;

	constructor(path: string) {
		if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
		this.db = new DatabaseSync(path);
		try {
			claimFile(this.db, path);
			this.db.exec(SCHEMA);
		} catch (err) {
			this.db.close();
			throw err;
		}
	}

	/** A cached prepared statement. */
	q(sql: string): StatementSync {
		let s = this.stmts.get(sql);
		if (!s) {
			s = this.db.prepare(sql);
			this.stmts.set(sql, s);
		}
		return s;
	}

	/**
	 * A write. Inside tx() the transaction is opened by the first write, so a
	 * change that writes nothing (a heartbeat of stats only) costs no BEGIN
	 * and COMMIT.
	 */
	run(sql: string, ...params: SQLInputValue[]): StatementResultingChanges {
		if (this.depth > 0 && !this.open) {
			this.db.exec("BEGIN");
			this.open = true;
		}
		return this.q(sql).run(...params);
	}

	/** Runs fn in one transaction (nested calls join the outer one). */
	tx<T>(fn: () => T): T {
		if (this.depth > 0) return fn();
		this.depth++;
		try {
			const out = fn();
			if (this.open) {
				this.db.exec("COMMIT");
				this.commits++;
			}
			return out;
		} catch (err) {
			// SQLite may have rolled back already (SQLITE_FULL, IOERR): a second ROLLBACK would replace the
			// real error with "cannot rollback - no transaction is active".
			if (this.open && this.db.isTransaction) this.db.exec("ROLLBACK");
			throw err;
		} finally {
			this.open = false;
			this.depth--;
		}
	}
}

/** The queen's store on one SQLite file (":memory:" for tests). */
export class SqliteStore implements QueenStore {
	readonly sql: SqliteDb;
	readonly hives;
	readonly shardRuns;
	readonly workers;
	readonly exits;
	readonly gpus;
	readonly claims;
	readonly events;
	readonly runs;
	readonly tokens;
	readonly audit;

	constructor(path: string) {
		this.sql = new SqliteDb(path);
		this.hives = sqliteHives(this.sql);
		this.workers = sqliteWorkers(this.sql);
		this.exits = sqliteExits(this.sql);
		this.gpus = sqliteGpus(this.sql);
		this.claims = sqliteClaims(this.sql);
		this.shardRuns = sqliteShardRuns(this.sql);
		this.events = sqliteEvents(this.sql);
		this.runs = sqliteRuns(this.sql);
		this.tokens = sqliteTokens(this.sql);
		this.audit = sqliteAudit(this.sql);
	}

	get writeCommits(): number {
		return this.sql.commits;
	}

	/** The raw connection, for tests and `queen backup`. */
	get db(): DatabaseSync {
		return this.sql.db;
	}

	tx<T>(fn: () => T): T {
		return this.sql.tx(fn);
	}

	async durable(): Promise<void> {}

	close(): void {
		this.sql.db.close();
	}
}
