import type { Claim, ExitRecord, GpuInfo, QueenWorkerView } from "@apiary/protocol";
import pg from "pg";
import type { RunSummary } from "../../advise/run.ts";
import type { ClaimTable } from "../claims.ts";
import type { EventTable } from "../events.ts";
import type { ExitTable } from "../exits.ts";
import type { GpuRow, GpuTable } from "../gpus.ts";
import type { HiveRow, HiveTable } from "../hives.ts";
import type { RunTable } from "../runs.ts";
import type { QueenStore } from "../store.ts";
import type { WorkerTable } from "../workers.ts";
import { migrate } from "./schema.ts";

// The queen's store on PostgreSQL (`queen start --db postgres://…`).
//
// The registry changes its in-memory state synchronously, as it does on
// SQLite; here each transaction's writes are queued and committed in order
// by one writer (the units queued meanwhile share a PostgreSQL transaction:
// group commit, one round trip per statement instead of per change). Nothing
// is acknowledged before it is durable: the hive socket acks and the HTTP
// API answers changes only once durable() resolves. A commit that keeps
// failing (the database is gone past the retries) ends the queen: its memory
// is ahead of the database, and a restart reloads from what was committed.
//
// One queen per database for now: a session advisory lock is held for the
// queen's life, and a second queen is refused until several queens share the
// fleet (issue #12).

export type Op = { sql: string; params: unknown[] };

/** Held by the queen serving a database. */
const SERVING_LOCK = 70_700_002;
/** How long a failing commit is retried before the queen gives up. */
const RETRY_MS = 30_000;
/** Exit keys remembered to answer "already recorded?" (a resend older than these is deduplicated by the table alone). */
const EXIT_KEYS = 200_000;

export interface PgStoreOptions {
	log?: (msg: string, extra?: object) => void;
	/** The database is unusable past the retries (default: log and exit 1). */
	onFatal?: (err: Error) => void;
	/** How long a failing commit is retried (default 30 s). */
	retryMs?: number;
}

interface Loaded {
	hives: HiveRow[];
	workers: QueenWorkerView[];
	gpus: GpuRow[];
	claims: Claim[];
	runs: { key: string; run: RunSummary }[];
	exitKeys: string[];
	lastEventId: number;
	firstEventId: number | null;
	reserved: number;
}

const exitKey = (hiveId: string, workerId: string, startedAt: string) => `${hiveId}\u0000${workerId}\u0000${startedAt}`;

async function load(c: pg.ClientBase): Promise<Loaded> {
	const rows = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await c.query<T>(sql, params)).rows;
	const hives = (
		await rows<{
			id: string;
			instance_id: string;
			state: HiveRow["state"];
			last_seen_at: Date | null;
			info: Pick<HiveRow, "version" | "host" | "driver" | "labels">;
		}>("SELECT id, instance_id, state, last_seen_at, info FROM hives")
	).map((r) => ({
		id: r.id,
		instanceId: r.instance_id,
		state: r.state,
		lastSeenAt: r.last_seen_at?.toISOString() ?? null,
		version: r.info.version,
		host: r.info.host,
		driver: r.info.driver,
		labels: r.info.labels ?? {},
	}));
	const workers = (await rows<{ info: QueenWorkerView }>("SELECT info FROM workers")).map((r) => r.info);
	const gpus = (await rows<{ hive_id: string; info: GpuInfo }>("SELECT hive_id, info FROM gpus")).map((r) => ({ hiveId: r.hive_id, info: r.info }));
	const claims = (
		await rows<{ id: string; holder: string; gpus: Claim["gpus"]; created_at: Date; expires_at: Date }>(
			"SELECT id, holder, gpus, created_at, expires_at FROM claims",
		)
	).map((r) => ({ id: r.id, holder: r.holder, gpus: r.gpus, createdAt: r.created_at.toISOString(), expiresAt: r.expires_at.toISOString() }));
	const runs = (await rows<{ key: string; run: RunSummary }>("SELECT key, run FROM runs ORDER BY seq")).map((r) => ({ key: r.key, run: r.run }));
	const exitKeys = (
		await rows<{ hive_id: string; worker_id: string; started_at: string }>(
			"SELECT hive_id, worker_id, started_at FROM exits ORDER BY started_at DESC LIMIT $1",
			[EXIT_KEYS],
		)
	).map((r) => exitKey(r.hive_id, r.worker_id, r.started_at));
	const [ev] = await rows<{ last: string | null; first: string | null }>("SELECT max(id) AS last, min(id) AS first FROM events");
	const [res] = await rows<{ value: string }>("SELECT value FROM meta WHERE key = 'event_ids_reserved'");
	return {
		hives,
		workers,
		gpus,
		claims,
		runs,
		exitKeys,
		lastEventId: Number(ev?.last ?? 0),
		firstEventId: ev?.first == null ? null : Number(ev.first),
		reserved: Number(res?.value ?? 0),
	};
}

export class PgStore implements QueenStore {
	readonly hives: HiveTable;
	readonly workers: WorkerTable;
	readonly exits: ExitTable;
	readonly gpus: GpuTable;
	readonly claims: ClaimTable;
	readonly events: EventTable;
	readonly runs: RunTable;
	private readonly pool: pg.Pool;
	private readonly holder: pg.PoolClient;
	private readonly o: PgStoreOptions;
	/** The writes of the transaction being run (tx depth > 0). */
	private unit: Op[] | null = null;
	private depth = 0;
	/** Units waiting to be committed, in order. */
	private queue: Op[][] = [];
	private writing: Promise<void> | null = null;
	private failed: Error | null = null;
	private closed = false;
	private rows = 0;
	private committed = 0;

	/** Connects, applies migrations, takes the serving lock and loads what the registry starts from. */
	static async open(url: string, o: PgStoreOptions = {}): Promise<PgStore> {
		const pool = new pg.Pool({ connectionString: url, max: 4 });
		// A connection lost while idle is the pool's to replace; the next query says if the database is gone.
		pool.on("error", (err) => o.log?.("postgres connection lost", { err: err.message }));
		let holder: pg.PoolClient | null = null;
		try {
			holder = await pool.connect();
			const { rows } = await holder.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [SERVING_LOCK]);
			if (!rows[0]!.ok) throw new Error("another queen is serving this database: several queens on one database are not supported yet (issue #12)");
			await migrate(holder);
			const loaded = await load(holder);
			return new PgStore(pool, holder, loaded, o);
		} catch (err) {
			holder?.release();
			await pool.end();
			throw err;
		}
	}

	private constructor(pool: pg.Pool, holder: pg.PoolClient, l: Loaded, o: PgStoreOptions) {
		this.pool = pool;
		this.holder = holder;
		this.o = o;
		// The connection holding the serving lock is gone (the server restarted or failed over): so is
		// the lock, and another queen could take the database. This one stops; its restart takes it again.
		holder.on("error", (err) => {
			if (this.closed || this.failed) return;
			this.failed = new Error(`postgres: the connection holding this queen's lock on the database was lost: ${err.message}`, { cause: err });
			(this.o.onFatal ?? defaultFatal)(this.failed);
		});
		const w = (sql: string, ...params: unknown[]) => this.write({ sql, params });
		const exitKeys = new Set(l.exitKeys);
		let lastEventId = l.lastEventId;
		let firstEventId = l.firstEventId;
		let reserved = l.reserved;
		this.hives = {
			all: () => l.hives,
			save: (h) =>
				w(
					"INSERT INTO hives (id, instance_id, state, last_seen_at, info) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET instance_id = excluded.instance_id, state = excluded.state, last_seen_at = excluded.last_seen_at, info = excluded.info",
					h.id,
					h.instanceId,
					h.state,
					h.lastSeenAt,
					JSON.stringify({ version: h.version, host: h.host, driver: h.driver, labels: h.labels }),
				),
			markAllUnknown: () => {
				for (const h of l.hives) if (h.state !== "lost" && h.state !== "left") h.state = "unknown";
				w("UPDATE hives SET state = 'unknown' WHERE state NOT IN ('lost', 'left')");
			},
		};
		this.workers = {
			all: () => l.workers,
			save: (v) =>
				w(
					"INSERT INTO workers (hive_id, id, state, info) VALUES ($1, $2, $3, $4) ON CONFLICT (hive_id, id) DO UPDATE SET state = excluded.state, info = excluded.info",
					v.hiveId,
					v.id,
					v.state,
					JSON.stringify(v),
				),
		};
		this.exits = {
			insert: (hiveId, workerId, startedAt, exit) => {
				const k = exitKey(hiveId, workerId, startedAt);
				if (exitKeys.has(k)) return false;
				exitKeys.add(k);
				// Bounded: the oldest key goes (Sets iterate in insertion order).
				if (exitKeys.size > EXIT_KEYS) exitKeys.delete(exitKeys.values().next().value!);
				w(
					"INSERT INTO exits (hive_id, worker_id, started_at, record) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
					hiveId,
					workerId,
					startedAt,
					JSON.stringify(exit),
				);
				return true;
			},
			of: async (hiveId, workerId) => {
				await this.durable();
				const { rows } = await this.pool.query<{ record: ExitRecord }>("SELECT record FROM exits WHERE hive_id = $1 AND worker_id = $2 ORDER BY started_at", [
					hiveId,
					workerId,
				]);
				return rows.map((r) => r.record);
			},
		};
		this.gpus = {
			all: () => l.gpus,
			save: (hiveId, g) =>
				w(
					"INSERT INTO gpus (hive_id, uuid, info) VALUES ($1, $2, $3) ON CONFLICT (hive_id, uuid) DO UPDATE SET info = excluded.info",
					hiveId,
					g.uuid,
					JSON.stringify(g),
				),
		};
		this.claims = {
			all: () => l.claims,
			insert: (c) =>
				w(
					"INSERT INTO claims (id, holder, gpus, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
					c.id,
					c.holder,
					JSON.stringify(c.gpus),
					c.createdAt,
					c.expiresAt,
				),
			delete: (id) => w("DELETE FROM claims WHERE id = $1", id),
		};
		this.runs = {
			all: () => l.runs,
			insert: (key, run) => w("INSERT INTO runs (key, run) VALUES ($1, $2)", key, JSON.stringify(run)),
			trim: (key, keep) => w("DELETE FROM runs WHERE key = $1 AND seq <= (SELECT seq FROM runs WHERE key = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)", key, keep),
			dropKey: (key) => w("DELETE FROM runs WHERE key = $1", key),
		};
		this.events = {
			lastLoggedId: () => lastEventId,
			firstLoggedId: () => firstEventId,
			reservedUpTo: () => reserved,
			saveReservation: (upTo) => {
				reserved = upTo;
				w("INSERT INTO meta (key, value) VALUES ('event_ids_reserved', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", upTo);
			},
			insertBatch: (first, last, json) => {
				lastEventId = last;
				firstEventId ??= first;
				// The events as the queen serialized them, one row each; `at` back as the same ISO text on the way out.
				w(
					"INSERT INTO events (id, type, at, hive_id, worker_id, data) SELECT (e->>'id')::bigint, e->>'type', (e->>'at')::timestamptz, e->>'hiveId', e->>'workerId', coalesce(e->'data', 'null') FROM jsonb_array_elements($1::jsonb) AS e",
					json,
				);
			},
			pruneUpTo: (lastId) => {
				if (firstEventId !== null && firstEventId <= lastId) firstEventId = lastId < lastEventId ? lastId + 1 : null;
				w("DELETE FROM events WHERE id <= $1", lastId);
			},
			batchesBetween: async (after, before, limit) => {
				await this.durable();
				const { rows } = await this.pool.query<{ events: string }>(
					`SELECT coalesce(json_agg(json_build_object('id', id, 'type', type, 'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'hiveId', hive_id, 'workerId', worker_id, 'data', data) ORDER BY id), '[]')::text AS events
					   FROM (SELECT * FROM events WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3) AS e`,
					[after, before, limit],
				);
				return [rows[0]!.events];
			},
		};
	}

	private write(op: Op): void {
		if (this.failed) throw this.failed;
		if (this.unit) this.unit.push(op);
		else this.enqueue([op]);
	}

	tx<T>(fn: () => T): T {
		if (this.depth > 0) return fn();
		this.depth++;
		this.unit = [];
		try {
			const out = fn();
			if (this.unit.length > 0) this.enqueue(this.unit);
			return out;
		} finally {
			// A throw drops the unit: its writes never reach the database (a rollback).
			this.unit = null;
			this.depth--;
		}
	}

	private enqueue(unit: Op[]): void {
		this.queue.push(unit);
		this.writing ??= this.drain();
	}

	/** Commits queued units in order, those queued meanwhile together; retries a failing batch, then gives up for good. */
	private async drain(): Promise<void> {
		try {
			await this.drainQueue();
		} finally {
			// Synchronously after the last check of the queue: a unit queued later starts a new drain.
			this.writing = null;
		}
	}

	private async drainQueue(): Promise<void> {
		while (this.queue.length > 0) {
			const batch = this.queue;
			this.queue = [];
			const retryMs = this.o.retryMs ?? RETRY_MS;
			const deadline = performance.now() + retryMs;
			for (let attempt = 0; ; attempt++) {
				try {
					await this.commit(batch);
					break;
				} catch (err) {
					if (performance.now() > deadline || this.closed) {
						this.failed = new Error(`postgres: committing the queen's changes failed for ${retryMs / 1000} s: ${(err as Error).message}`, { cause: err });
						this.o.log?.("postgres writes failed; the queen cannot go on", { err: (err as Error).message });
						(this.o.onFatal ?? defaultFatal)(this.failed);
						return;
					}
					this.o.log?.("postgres commit failed; retrying", { attempt, err: (err as Error).message });
					await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
				}
			}
		}
	}

	private async commit(batch: Op[][]): Promise<void> {
		const c = await this.pool.connect();
		// A connection dying mid-commit rejects the query in flight; its 'error' event is the same news.
		const quiet = () => {};
		c.on("error", quiet);
		let broken = false;
		try {
			// The whole batch as one simple-protocol query: one round trip and one socket write, where a
			// statement each cost a round trip (and on these machines 0.3 ms of syscalls) apiece.
			const results = (await c.query(`BEGIN;${batch.flatMap((unit) => unit.map(inline)).join(";")};COMMIT`)) as unknown as pg.QueryResult[];
			this.rows += results.reduce((n, r) => n + (r.command === "BEGIN" || r.command === "COMMIT" ? 0 : (r.rowCount ?? 0)), 0);
			this.committed++;
		} catch (err) {
			await c.query("ROLLBACK").catch(() => {
				broken = true;
			});
			throw err;
		} finally {
			c.off("error", quiet);
			// A connection that could not even roll back is not given to the next commit.
			c.release(broken);
		}
	}

	/** Rows inserted, updated or deleted by committed transactions (for /metrics). */
	rowsWritten(): number {
		return this.rows;
	}

	commits(): number {
		return this.committed;
	}

	/** Resolves once everything changed so far is committed; rejects if it never can be. */
	async durable(): Promise<void> {
		while (this.writing) await this.writing;
		if (this.failed) throw this.failed;
	}

	async close(): Promise<void> {
		await this.durable().catch(() => {});
		this.closed = true;
		await this.holder.query("SELECT pg_advisory_unlock($1)", [SERVING_LOCK]).catch(() => {});
		this.holder.release();
		await this.pool.end();
	}
}

/**
 * A statement with its parameters written in as literals (escapeLiteral:
 * quotes and backslashes escaped, so a hostile value stays one string).
 * Only for the queen's own statements, which hold no `$` but their parameters.
 */
export function inline(op: Op): string {
	return op.sql.replace(/\$(\d+)/g, (_, n: string) => {
		const v = op.params[Number(n) - 1];
		if (v === null || v === undefined) return "NULL";
		if (typeof v === "number") {
			if (!Number.isFinite(v)) throw new Error(`postgres: parameter $${n} is not a finite number`);
			return String(v);
		}
		if (typeof v === "boolean") return v ? "TRUE" : "FALSE";
		return pg.escapeLiteral(String(v));
	});
}

function defaultFatal(err: Error): void {
	process.stderr.write(`queen: ${err.message}\n`);
	process.exit(1);
}
