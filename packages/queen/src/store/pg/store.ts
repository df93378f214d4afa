import type { Claim, Drain, RunView, ExitRecord, GpuInfo, PlacementAnswer, QueenEvent, QueenWorkerView } from "@apiary/protocol";
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { RunSummary } from "../../advise/run.ts";
import type { ClaimTable } from "../claims.ts";
import type { ShardRunTable } from "../shard-runs.ts";
import type { EventTable } from "../events.ts";
import type { ExitTable } from "../exits.ts";
import type { GpuRow, GpuTable } from "../gpus.ts";
import type { HiveRow, HiveSamples, HiveTable } from "../hives.ts";
import type { RunTable } from "../runs.ts";
import { insertToken, type TokenRow, type TokenTable, tokenOf } from "../tokens.ts";
import { type AuditTable, auditOf, insertAudit } from "../audit.ts";
import type { KeyedPlacement, QueenStore, SharedWaiters } from "../store.ts";
import type { WorkerTable } from "../workers.ts";
import { pickHost } from "./hosts.ts";
import { type Renewal, startRenewal } from "./renewal.ts";
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
// Several queens share one database (docs/several-queens.md): events are
// numbered in the committing transaction from a counter row and read back by
// every queen (LISTEN/NOTIFY and a poll), which publishes them and reloads
// the rows of hives another queen changed; a hive's row names the queen it is
// connected to, which renews it on the database's clock; each queen renews
// its own row in `queens`, and the hives of a queen that is gone are unknown.
// Claims are decided one at a time fleet-wide under an advisory lock.

export type Op = { sql: string; params: unknown[] };

/** How long a failing commit is retried before the queen gives up. */
const RETRY_MS = 30_000;
/** One commit's wait for the server's answer: a batch is bounded (MAX_BATCH_OPS; milliseconds), so this is only ever a dead or drowning server. */
const COMMIT_TIMEOUT_MS = 10_000;
/**
 * The most statements one commit carries (whole units, so it may be passed by
 * one large unit). Units queued while a commit is in flight go together, and a
 * join storm queued hundreds of thousands: that one transaction outlasted the
 * commit timeout, was retried whole and ended the queen (bench row 17).
 */
const MAX_BATCH_OPS = 2000;
/** Any other query's bound (reads, renewals, pruning). */
const QUERY_TIMEOUT_MS = 10_000;
const TAIL_TIMEOUT_MS = 5_000;
/** How an event insert starts (counted to know when the tail has read a commit's events back). */
// The counter row is locked by a statement of its own first: the insert after it then reads the events
// table with a snapshot taken once every earlier writer has committed (READ COMMITTED), so the exit
// check below sees another queen's exit event however close the two commits were.
const EVENT_INSERT = "SELECT 1 FROM event_counter FOR UPDATE;";
/** Several queens: each renews its row this often; one silent past QUEEN_GONE_MS is gone, and its hives are unknown. */
const QUEEN_RENEW_MS = 1000;
const QUEEN_GONE_MS = 3000;
/** A queen whose loop has not run this long is wedged, not paused: its row is no longer renewed (renewal.ts). */
const QUEEN_STALL_MS = 15_000;
/** Exit keys remembered to answer "already recorded?" (a resend older than these is deduplicated by the table alone). */
const EXIT_KEYS = 200_000;

export interface PgStoreOptions {
	log?: (msg: string, extra?: object) => void;
	/** The database is unusable past the retries (default: log and exit 1). */
	onFatal?: (err: Error) => void;
	/** How long a failing commit is retried (default 30 s). */
	retryMs?: number;
	/** This queen, in the rows and events it writes (several queens share the database). */
	queenId?: string;
}

/** A batch of events read back from the log, with the queen that wrote each. */
export type CommittedEvent = QueenEvent & { origin: string | null };

/** What several queens share of one hive: its row, workers and GPUs as committed. */
export interface HiveRows {
	hives: (HiveRow & { owner: string | null })[];
	workers: QueenWorkerView[];
	gpus: GpuRow[];
}

interface Loaded extends HiveRows {
	claims: Claim[];
	runs: { key: string; run: RunSummary }[];
	tokens: TokenRow[];
	exitKeys: string[];
	lastEventId: number;
	firstEventId: number | null;
}

const exitKey = (hiveId: string, workerId: string, startedAt: string) => `${hiveId}\u0000${workerId}\u0000${startedAt}`;

/** Runs the thunks one after another; their results in order. */
async function inOrder<T extends unknown[]>(qs: { [K in keyof T]: () => Promise<T[K]> }): Promise<T> {
	const out: unknown[] = [];
	for (const q of qs) out.push(await q());
	return out as T;
}

/** Hives with their workers and GPUs as committed: every hive, or the ones named. */
async function readHives(c: pg.Pool | pg.ClientBase, ids: string[] | null): Promise<HiveRows> {
	const only = (col: string) => (ids ? ` WHERE ${col} = ANY($1)` : "");
	const params = ids ? [ids] : [];
	// Three at once on a pool (three connections); one after another on one client, which runs one query at a time
	// (pg queues overlapping ones and warns that it will stop doing so in pg@9).
	const all =
		c instanceof pg.Pool ? <T extends unknown[]>(qs: { [K in keyof T]: () => Promise<T[K]> }) => Promise.all(qs.map((q) => q())) as Promise<T> : inOrder;
	const [h, wk, g] = await all([
		() =>
			c.query<{
				id: string;
				instance_id: string;
				state: HiveRow["state"];
				last_seen_at: Date | null;
				owner: string | null;
				info: Pick<HiveRow, "version" | "host" | "driver" | "labels">;
				drain: Drain | null;
			}>(
				`SELECT h.id, h.instance_id, h.state, h.last_seen_at, h.owner, h.info, d.drain FROM hives h LEFT JOIN drains d ON d.hive_id = h.id${only("h.id")}`,
				params,
			),
		() => c.query<{ info: QueenWorkerView }>(`SELECT info FROM workers${only("hive_id")}`, params),
		() => c.query<{ hive_id: string; info: GpuInfo }>(`SELECT hive_id, info FROM gpus${only("hive_id")}`, params),
	]);
	return {
		hives: h.rows.map((r) => ({
			id: r.id,
			instanceId: r.instance_id,
			state: r.state,
			lastSeenAt: r.last_seen_at?.toISOString() ?? null,
			owner: r.owner,
			version: r.info.version,
			host: r.info.host,
			driver: r.info.driver,
			labels: r.info.labels ?? {},
			drain: r.drain,
		})),
		workers: wk.rows.map((r) => r.info),
		gpus: g.rows.map((r) => ({ hiveId: r.hive_id, info: r.info })),
	};
}

async function load(c: pg.ClientBase): Promise<Loaded> {
	const rows = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await c.query<T>(sql, params)).rows;
	const { hives, workers, gpus } = await readHives(c, null);
	const claims = (
		await rows<{ id: string; holder: string; gpus: Claim["gpus"]; created_at: Date; expires_at: Date }>(
			"SELECT id, holder, gpus, created_at, expires_at FROM claims",
		)
	).map((r) => ({ id: r.id, holder: r.holder, gpus: r.gpus, createdAt: r.created_at.toISOString(), expiresAt: r.expires_at.toISOString() }));
	const runs = (await rows<{ key: string; run: RunSummary }>("SELECT key, run FROM runs ORDER BY seq")).map((r) => ({ key: r.key, run: r.run }));
	const tokens = (await rows("SELECT * FROM tokens ORDER BY created_at, id")).map((r) => tokenOf(r as Parameters<typeof tokenOf>[0]));
	const exitKeys = (
		await rows<{ hive_id: string; worker_id: string; started_at: string }>(
			"SELECT hive_id, worker_id, started_at FROM exits ORDER BY started_at DESC LIMIT $1",
			[EXIT_KEYS],
		)
	).map((r) => exitKey(r.hive_id, r.worker_id, r.started_at));
	const [ev] = await rows<{ last: string | null; first: string | null }>("SELECT max(id) AS last, min(id) AS first FROM events");
	const [counter] = await rows<{ last_id: string }>("SELECT last_id FROM event_counter");
	return {
		hives,
		workers,
		gpus,
		claims,
		runs,
		tokens,
		exitKeys,
		// The counter, not the log: every event may have been pruned.
		lastEventId: Math.max(Number(ev?.last ?? 0), Number(counter?.last_id ?? 0)),
		firstEventId: ev?.first == null ? null : Number(ev.first),
	};
}

export class PgStore implements QueenStore {
	readonly hives: HiveTable;
	readonly workers: WorkerTable;
	readonly exits: ExitTable;
	readonly gpus: GpuTable;
	readonly claims: ClaimTable;
	readonly shardRuns: ShardRunTable;
	readonly events: EventTable;
	readonly runs: RunTable;
	readonly tokens: TokenTable;
	readonly audit: AuditTable;
	private readonly pool: pg.Pool;
	/** The commits' own connection (one). */
	private readonly writer: pg.Pool;
	private readonly holder: pg.PoolClient;
	/** The server picked at open (pickHost), which the renewal thread connects to as well. */
	private readonly host: string;
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
	/**
	 * Units queued and committed, and who waits for a count of them: durable()
	 * waits for what was queued before it was called, not for a moment the
	 * queue is empty, which a join storm put off for good (every ack waited on
	 * it; bench row 17).
	 */
	private queuedUnits = 0;
	private doneUnits = 0;
	private readonly commitWaiters = new Waiters();

	/** Connects, applies migrations, registers this queen and loads what the registry starts from. */
	static async open(url: string, opts: PgStoreOptions = {}): Promise<PgStore> {
		const o = { ...opts, queenId: opts.queenId ?? randomUUID() };
		// libpq's multi-host form: the first host that fits target_session_attrs (a promoted standby after a failover).
		// A new connection to a server that does not answer fails in 5 s (else a pool.connect() waits forever).
		const host = await pickHost(url, o.log);
		// Every query on the pool is bounded too: a server cut off by the network answers nothing and closes
		// nothing, and a read waiting on it for ever (the event tail, above all) would leave this queen's view
		// of the others where the cut found it long after the network healed. A timed-out connection is dropped.
		const pool = new pg.Pool({ connectionString: host, max: 4, connectionTimeoutMillis: 5000, keepAlive: true, query_timeout: QUERY_TIMEOUT_MS });
		// A connection lost while idle is the pool's to replace; the next query says if the database is gone.
		pool.on("error", (err) => o.log?.("postgres connection lost", { err: err.message }));
		// Commits have a connection of their own: on the shared pool they waited behind reads (samples,
		// liveness, the tail) past the pool's 5 s wait, and under a join storm that ended the queen (bench row 17).
		const writer = new pg.Pool({ connectionString: host, max: 1, connectionTimeoutMillis: 5000, keepAlive: true, query_timeout: QUERY_TIMEOUT_MS });
		writer.on("error", (err) => o.log?.("postgres connection lost", { err: err.message }));
		let holder: pg.PoolClient | null = null;
		// Migrations and the first load may take long on a large database: a connection of their own, unbounded.
		const setup = new pg.Client({ connectionString: host, connectionTimeoutMillis: 5000, keepAlive: true });
		try {
			await setup.connect();
			await migrate(setup);
			await setup.query("INSERT INTO queens (id, seen_at) VALUES ($1, now()) ON CONFLICT (id) DO UPDATE SET seen_at = now()", [o.queenId]);
			// Hives whose queen is gone (a restart is a new queen) are unknown until they connect again.
			await setup.query(
				`UPDATE hives SET state = 'unknown' WHERE state IN ('ready', 'stale')
					   AND (owner IS NULL OR owner NOT IN (SELECT id FROM queens WHERE now() - seen_at < $1 * interval '1 millisecond'))`,
				[QUEEN_GONE_MS],
			);
			const loaded = await load(setup);
			holder = await pool.connect();
			return new PgStore(pool, writer, holder, loaded, o, host);
		} catch (err) {
			holder?.release();
			await pool.end();
			await writer.end();
			throw err;
		} finally {
			await setup.end().catch(() => {});
		}
	}

	private constructor(pool: pg.Pool, writer: pg.Pool, holder: pg.PoolClient, l: Loaded, o: PgStoreOptions, host: string) {
		this.pool = pool;
		this.host = host;
		this.writer = writer;
		this.holder = holder;
		this.o = o;
		// The connection this queen listens on is gone (the server restarted or failed over): it would
		// hear of no other queen's change again. It stops; its restart reloads and listens again.
		holder.on("error", (err) => {
			if (this.closed || this.failed) return;
			this.failed = new Error(`postgres: the connection this queen listens on was lost: ${err.message}`, { cause: err });
			(this.o.onFatal ?? defaultFatal)(this.failed);
		});
		const w = (sql: string, ...params: unknown[]) => this.write({ sql, params });
		const exitKeys = new Set(l.exitKeys);
		const lastEventId = l.lastEventId;
		this.firstEventId = l.firstEventId;
		this.hives = {
			all: () => l.hives,
			save: (h) =>
				// Ready is written only by the queen the hive is connected to: it becomes the hive's
				// owner and renews its liveness on the database's clock. Other states keep both.
				w(
					`INSERT INTO hives (id, instance_id, state, last_seen_at, info, owner, samples, beat) VALUES ($1, $2, $3, now(), $4, $5, $6, nextval('hive_beats'))
							 ON CONFLICT (id) DO UPDATE SET instance_id = excluded.instance_id, state = excluded.state, info = excluded.info,
							   last_seen_at = CASE WHEN excluded.state = 'ready' THEN now() ELSE hives.last_seen_at END,
							   owner = CASE WHEN excluded.state = 'ready' THEN excluded.owner ELSE hives.owner END,
							   samples = CASE WHEN excluded.state = 'ready' THEN excluded.samples ELSE NULL END, beat = excluded.beat`,
					h.id,
					h.instanceId,
					h.state,
					JSON.stringify({ version: h.version, host: h.host, driver: h.driver, labels: h.labels }),
					o.queenId ?? null,
					h.samples ? JSON.stringify(h.samples) : null,
				),
			setDrain: (id, drain) =>
				drain === null
					? w("DELETE FROM drains WHERE hive_id = $1", id)
					: w("INSERT INTO drains (hive_id, drain) VALUES ($1, $2) ON CONFLICT (hive_id) DO UPDATE SET drain = excluded.drain", id, JSON.stringify(drain)),
			// Several queens: the others still serve their hives; a gone queen's were marked unknown at start (open()).
			markAllUnknown: () => {},
		};
		this.workers = {
			all: () => l.workers,
			save: (v) =>
				w(
					// A run's exit is final: a late write of that run as running or evicted (queued by a queen cut off
					// from the database while its hive moved on and reported the exit elsewhere) leaves the row alone.
					`INSERT INTO workers (hive_id, id, state, info) VALUES ($1, $2, $3, $4) ON CONFLICT (hive_id, id) DO UPDATE SET state = excluded.state, info = excluded.info
					  WHERE NOT (workers.state = 'exited' AND workers.info->>'startedAt' = excluded.info->>'startedAt')`,
					v.hiveId,
					v.id,
					v.state,
					JSON.stringify(v),
				),
			find: async (id, hive) => {
				await this.durable();
				const { rows } = await this.pool.query<{ info: QueenWorkerView }>(
					hive === undefined ? "SELECT info FROM workers WHERE id = $1" : "SELECT info FROM workers WHERE id = $1 AND hive_id = $2",
					hive === undefined ? [id] : [id, hive],
				);
				return rows.map((r) => r.info);
			},
			prune: (before) => w("DELETE FROM workers WHERE state <> 'running' AND info->>'startedAt' < $1", before),
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
			remember: (hiveId, workerId, startedAt) => void exitKeys.add(exitKey(hiveId, workerId, startedAt)),
			of: async (hiveId, workerId) => {
				await this.durable();
				const { rows } = await this.pool.query<{ record: ExitRecord }>("SELECT record FROM exits WHERE hive_id = $1 AND worker_id = $2 ORDER BY started_at", [
					hiveId,
					workerId,
				]);
				return rows.map((r) => r.record);
			},
			prune: (before) => w("DELETE FROM exits WHERE started_at < $1", before),
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
			remove: (hiveId, uuid) => w("DELETE FROM gpus WHERE hive_id = $1 AND uuid = $2", hiveId, uuid),
		};
		const runsOf = async (sql: string, params: unknown[]) => (await this.pool.query<{ run: RunView }>(sql, params)).rows.map((r) => r.run);
		this.shardRuns = {
			// Fenced: a queen that lost a run to another (it was gone a while) no longer writes it.
			save: (r) =>
				w(
					`INSERT INTO shard_runs (id, key, state, created_at, run, owner) VALUES ($1, $2, $3, $4, $5, $6)
					 ON CONFLICT (id) DO UPDATE SET state = excluded.state, run = excluded.run WHERE shard_runs.owner = excluded.owner`,
					r.id,
					r.idempotencyKey,
					r.state,
					r.createdAt,
					JSON.stringify(r),
					o.queenId,
				),
			reserve: async (r) => {
				const { rowCount } = await this.pool.query(
					"INSERT INTO shard_runs (id, key, state, created_at, run, owner) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
					[r.id, r.idempotencyKey, r.state, r.createdAt, JSON.stringify(r), o.queenId],
				);
				if (rowCount === 1) return null;
				const held = r.idempotencyKey === null ? null : (await runsOf("SELECT run FROM shard_runs WHERE key = $1", [r.idempotencyKey]))[0];
				if (!held) throw new Error(`run ${r.id}: its row could not be written`);
				return held;
			},
			// One UPDATE: of two queens taking over the same gone queen's run, the second finds it owned by a live one.
			adopt: () =>
				runsOf(
					`UPDATE shard_runs SET owner = $1
					  WHERE state = 'running' AND (owner IS NULL OR (owner <> $1 AND owner NOT IN (SELECT id FROM queens WHERE now() - seen_at < $2 * interval '1 millisecond')))
					  RETURNING run`,
					[o.queenId, QUEEN_GONE_MS],
				),
			takenOver: async (ids) =>
				(await this.pool.query<{ id: string }>("SELECT id FROM shard_runs WHERE id = ANY($1) AND owner IS DISTINCT FROM $2", [ids, o.queenId])).rows.map(
					(r) => r.id,
				),
			find: async (id) => (await runsOf("SELECT run FROM shard_runs WHERE id = $1", [id]))[0] ?? null,
			byKey: async (key) => (await runsOf("SELECT run FROM shard_runs WHERE key = $1", [key]))[0] ?? null,
			list: (state, limit = 100) =>
				state
					? runsOf("SELECT run FROM shard_runs WHERE state = $1 ORDER BY created_at DESC LIMIT $2", [state, limit])
					: runsOf("SELECT run FROM shard_runs ORDER BY created_at DESC LIMIT $1", [limit]),
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
		this.tokens = {
			all: () => l.tokens,
			insert: (t) => w(...insertToken(t, (n) => `$${n}`)),
			revoke: (id, at) => w("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", id, at),
			load: async () => {
				await this.durable();
				return (await this.pool.query("SELECT * FROM tokens ORDER BY created_at, id")).rows.map(tokenOf);
			},
		};
		this.audit = {
			append: (r) => w(...insertAudit(r, (n) => `$${n}`)),
			list: async (f) => {
				await this.durable();
				const { rows } = await this.pool.query(
					`SELECT * FROM audit WHERE id > $1 AND ($2::text IS NULL OR actor = $2 OR token_id = $2) AND ($3::text IS NULL OR strpos(op, $3) > 0) ORDER BY id LIMIT $4`,
					[f.since ?? 0, f.actor ?? null, f.op ?? null, f.limit],
				);
				return rows.map(auditOf);
			},
			prune: (keep, before) => {
				w("DELETE FROM audit WHERE at < $1", before);
				w("DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET $1)", keep);
			},
		};
		this.runs = {
			all: () => l.runs,
			insert: (key, run) => w("INSERT INTO runs (key, run) VALUES ($1, $2)", key, JSON.stringify(run)),
			trim: (key, keep) => w("DELETE FROM runs WHERE key = $1 AND seq <= (SELECT seq FROM runs WHERE key = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)", key, keep),
			dropKey: (key) => w("DELETE FROM runs WHERE key = $1", key),
		};
		this.events = {
			lastLoggedId: () => lastEventId,
			firstLoggedId: () => this.firstEventId,
			insertUnnumbered: (json, _count) => {
				this.eventWrites++;
				// Numbered from the counter row in this transaction: its lock holds other writers until
				// the commit, so ids are gapless and become visible in order; then every queen is told.
				w(
					// Left out, the ids staying gapless: a run's exit, spawn or eviction once that run's
					// worker.exited is logged (a second exit from a queen the hive reported to before it moved;
					// a late spawn or eviction queued by a queen cut off from the database meanwhile), and a
					// claim.released already logged for that claim (released at one queen, expired at another).
					`${EVENT_INSERT}
							 WITH x AS (
							   SELECT a.e, a.ord FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS a(e, ord)
							   WHERE NOT (a.e->>'type' IN ('worker.exited', 'worker.spawned', 'worker.evicted') AND EXISTS (
							     SELECT 1 FROM events p WHERE p.type = 'worker.exited' AND p.hive_id = a.e->>'hiveId' AND p.worker_id = a.e->>'workerId'
							       AND p.data->'exit'->>'startedAt' = coalesce(a.e->'data'->'exit'->>'startedAt', a.e->'data'->'worker'->>'startedAt', a.e->'data'->>'startedAt')))
							     AND NOT (a.e->>'type' = 'claim.released' AND EXISTS (
							     SELECT 1 FROM events p WHERE p.type = 'claim.released' AND p.data->'claim'->>'id' = a.e->'data'->'claim'->>'id'))),
							 n AS (SELECT x.e, row_number() OVER (ORDER BY x.ord) AS rn FROM x),
							 c AS (UPDATE event_counter SET last_id = last_id + (SELECT count(*) FROM n) RETURNING last_id)
							 INSERT INTO events (id, type, at, hive_id, worker_id, data, origin)
							 SELECT c.last_id - (SELECT count(*) FROM n) + n.rn, n.e->>'type', now(), n.e->>'hiveId', n.e->>'workerId', coalesce(n.e->'data', 'null'), $2
							 FROM c, n`,
					json,
					o.queenId ?? null,
				);
				w("SELECT pg_notify('apiary_events', '')");
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
		this.queuedUnits++;
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
			const all = this.queue;
			this.queue = [];
			// In order, whole units, at most MAX_BATCH_OPS statements a commit.
			for (let i = 0; i < all.length; ) {
				let j = i;
				for (let n = 0; j < all.length && (j === i || n + all[j]!.length <= MAX_BATCH_OPS); j++) n += all[j]!.length;
				const batch = all.slice(i, j);
				i = j;
				const retryMs = this.o.retryMs ?? RETRY_MS;
				const deadline = performance.now() + retryMs;
				for (let attempt = 0; ; attempt++) {
					try {
						await this.commit(batch);
						this.doneUnits += batch.length;
						this.commitWaiters.reach(this.doneUnits);
						break;
					} catch (err) {
						if (performance.now() > deadline || this.closed) {
							this.failed = new Error(`postgres: committing the queen's changes failed for ${retryMs / 1000} s: ${(err as Error).message}`, { cause: err });
							this.o.log?.("postgres writes failed; the queen cannot go on", { err: (err as Error).message });
							this.commitWaiters.fail(this.failed);
							(this.o.onFatal ?? defaultFatal)(this.failed);
							return;
						}
						this.o.log?.("postgres commit failed; retrying", { attempt, err: (err as Error).message });
						await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
					}
				}
			}
		}
	}

	private async commit(batch: Op[][]): Promise<void> {
		const c = await this.writer.connect();
		// A connection dying mid-commit rejects the query in flight; its 'error' event is the same news.
		const quiet = () => {};
		c.on("error", quiet);
		let broken = false;
		try {
			// The whole batch as one simple-protocol query: one round trip and one socket write, where a
			// statement each cost a round trip (and on these machines 0.3 ms of syscalls) apiece.
			// Bounded: a server cut off by the network answers nothing and closes nothing, and a commit
			// that waited for it forever would stop this queen acknowledging without ever failing.
			// (query_timeout per query is read by pg's client, though its types do not list it.)
			// A batch that logs events takes the counter row first: taken at its first event, after rows of hives
			// it had already written, two queens' batches each held a row the other waited for (deadlocks in bench row 17).
			const events = batch.reduce((n, unit) => n + unit.filter((op) => op.sql.startsWith(EVENT_INSERT)).length, 0);
			const q = {
				text: `BEGIN;${events > 0 ? EVENT_INSERT : ""}${batch.flatMap((unit) => unit.map(inline)).join(";")};COMMIT`,
				query_timeout: COMMIT_TIMEOUT_MS,
			} as pg.QueryConfig;
			const results = (await c.query(q)) as unknown as pg.QueryResult[];
			this.eventsCommitted += events;
			this.rows += results.reduce((n, r) => n + (r.command === "INSERT" || r.command === "UPDATE" || r.command === "DELETE" ? (r.rowCount ?? 0) : 0), 0);
			this.committed++;
		} catch (err) {
			// Timed out: the connection still waits for that answer, and a ROLLBACK would wait behind it.
			if ((err as Error).message === "Query read timeout") broken = true;
			else
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

	/** Several queens may share the database (docs/several-queens.md). */
	readonly shared = true;

	// ---- several queens (shared) ------------------------------------------------------------

	private tailLast = 0;
	/** Event inserts queued, committed, and committed before the tail last caught up. */
	private eventWrites = 0;
	private eventsCommitted = 0;
	private caughtUp = 0;
	private tailing: Promise<void> | null = null;
	private onBatch: ((events: CommittedEvent[]) => Promise<void>) | null = null;
	/** The oldest event id the log still holds: from the rows read back, and again after every prune (any queen's: they all prune). */
	private firstEventId: number | null = null;
	private tailTimer: NodeJS.Timeout | null = null;
	private renewal: Renewal | null = null;

	/** Reads the event log after `fromId` whenever a queen commits (LISTEN) and every second, batch by batch, in id order. */
	async startTail(fromId: number, onBatch: (events: CommittedEvent[]) => Promise<void>): Promise<void> {
		// Renewed on a thread and a connection of its own (renewal.ts): not on the pool, as a pool busy with this
		// queen's work (placements waiting on the claims lock) must not delay the renewal past QUEEN_GONE_MS, or the
		// other queens take this one's runs while it lives (the soak, seed 537384: runs passed back and forth
		// thousands of times, none finished); not on the loop, as a loop stalled a few seconds did the same.
		this.renewal = startRenewal({
			connectionString: this.host,
			queenId: this.o.queenId!,
			everyMs: QUEEN_RENEW_MS,
			stallMs: QUEEN_STALL_MS,
			queryTimeoutMs: QUEEN_GONE_MS,
			...(this.o.log ? { log: this.o.log } : {}),
		});
		this.tailLast = fromId;
		this.onBatch = onBatch;
		this.holder.on("notification", () => void this.catchUp().catch(() => {}));
		await this.atStart("listening for the other queens' changes", () => this.holder.query("LISTEN apiary_events"));
		this.tailTimer = setInterval(() => void this.catchUp().catch(() => {}), 1000);
		this.tailTimer.unref();
		await this.atStart("reading the event log", () => this.catchUp());
	}

	/**
	 * A step of the queen's start, retried as commits are (a server busy or a
	 * network blip for a few seconds is not a failed start), then failing
	 * with what it was doing (a bare "Query read timeout" names nothing).
	 */
	private async atStart<T>(what: string, step: () => Promise<T>): Promise<T> {
		const retryMs = this.o.retryMs ?? RETRY_MS;
		const deadline = performance.now() + retryMs;
		for (;;) {
			try {
				return await step();
			} catch (err) {
				if (performance.now() >= deadline)
					throw new Error(`postgres: ${what} at start failed for ${retryMs / 1000} s: ${(err as Error).message}`, { cause: err });
				this.o.log?.(`postgres: ${what} at start failed; retrying`, { err: (err as Error).message });
				await new Promise((r) => setTimeout(r, 500));
			}
		}
	}

	/**
	 * Resolves once every event committed before the call has been read back
	 * and handled: after one whole pass over the log that started after the
	 * call. Not once the tail stops, which it did not while other queens kept
	 * committing and callers kept coming (a join storm: every hello and every
	 * lock holder waited on it for tens of seconds; bench row 17).
	 */
	catchUp(): Promise<void> {
		const pass = this.passesStarted + 1;
		const done = this.tailWaiters.wait(pass);
		this.passesWanted = Math.max(this.passesWanted, pass);
		this.tailing ??= this.tail();
		return done;
	}

	/** Passes over the log: started, and wanted by a caller. */
	private passesStarted = 0;
	private passesWanted = 0;
	private readonly tailWaiters = new Waiters();

	private async tail(): Promise<void> {
		try {
			while (this.passesStarted < this.passesWanted) {
				const pass = ++this.passesStarted;
				const upTo = this.eventsCommitted;
				try {
					await this.readToEnd();
				} catch (err) {
					// The callers of this pass and those that came during it learn it failed; the next caller starts again.
					this.passesWanted = pass;
					this.tailWaiters.fail(err as Error, pass + 1);
					return;
				}
				this.caughtUp = Math.max(this.caughtUp, upTo);
				this.tailWaiters.reach(pass);
			}
		} finally {
			this.tailing = null;
		}
	}

	/** One pass: the log after what was read last, batch by batch, up to its end now. */
	private async readToEnd(): Promise<void> {
		for (;;) {
			const { rows } = await this.pool.query<{
				id: string;
				type: QueenEvent["type"];
				at: string;
				hive_id: string | null;
				worker_id: string | null;
				data: unknown;
				origin: string | null;
			}>({
				text: `SELECT id, type, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, hive_id, worker_id, data, origin
				   FROM events WHERE id > $1 ORDER BY id LIMIT 2000`,
				values: [this.tailLast],
				// One index range: a read this short that has not come back in a few seconds never will.
				query_timeout: TAIL_TIMEOUT_MS,
			} as pg.QueryConfig);
			if (rows.length === 0) return;
			const batch = rows.map((r) => ({
				id: Number(r.id),
				type: r.type,
				at: r.at,
				hiveId: r.hive_id,
				workerId: r.worker_id,
				data: r.data,
				origin: r.origin,
			}));
			this.firstEventId ??= batch[0]!.id;
			await this.onBatch?.(batch);
			this.tailLast = batch.at(-1)!.id;
			if (rows.length < 2000) return;
		}
	}

	/** The committed rows of these hives, for a queen to replace what it holds of them. */
	async loadHives(ids: string[]): Promise<HiveRows> {
		return readHives(this.pool, ids);
	}

	/** The committed rows of these workers (those with none were deleted), for a queen to replace what it holds of them. */
	async loadWorkers(which: { hiveId: string; id: string }[]): Promise<QueenWorkerView[]> {
		const { rows } = await this.pool.query<{ info: QueenWorkerView }>(
			"SELECT w.info FROM workers w JOIN unnest($1::text[], $2::text[]) AS p(h, i) ON w.hive_id = p.h AND w.id = p.i",
			[which.map((w) => w.hiveId), which.map((w) => w.id)],
		);
		return rows.map((r) => r.info);
	}

	private lastBeat = 0;

	/** Samples of other queens' hives written since the last call, oldest first. */
	async samplesSince(): Promise<{ id: string; owner: string | null; samples: HiveSamples; seenAgoMs: number | null }[]> {
		// Not this queen's own hives: it has their samples first-hand, and
		// reading them back parsed a row of 50 samples per hive per 5 s for nothing.
		// With each renewal, how long ago (on the database's clock) the hive was last seen.
		const { rows } = await this.pool.query<{ id: string; owner: string | null; samples: HiveSamples; beat: string; age_ms: number | null }>(
			`SELECT id, owner, samples, beat, (extract(epoch FROM now() - last_seen_at) * 1000)::float8 AS age_ms
			   FROM hives WHERE beat > $1 AND samples IS NOT NULL AND owner IS DISTINCT FROM $2 ORDER BY beat`,
			[this.lastBeat, this.o.queenId ?? null],
		);
		if (rows.length > 0) this.lastBeat = Number(rows.at(-1)!.beat);
		return rows.map((r) => ({ id: r.id, owner: r.owner, samples: r.samples, seenAgoMs: r.age_ms }));
	}

	/** Hives whose liveness another queen renews, with how long ago on the database's clock (the sweep). */
	async livenessAges(): Promise<{ id: string; state: HiveRow["state"]; ownerAlive: boolean; ageMs: number }[]> {
		const { rows } = await this.pool.query<{ id: string; state: HiveRow["state"]; owner_alive: boolean; age_ms: number }>(
			`SELECT id, state, (extract(epoch FROM now() - last_seen_at) * 1000)::float8 AS age_ms,
			        owner IN (SELECT id FROM queens WHERE now() - seen_at < $1 * interval '1 millisecond') AS owner_alive
			   FROM hives WHERE state IN ('ready', 'stale', 'unknown') AND last_seen_at IS NOT NULL`,
			[QUEEN_GONE_MS],
		);
		return rows.map((r) => ({ id: r.id, state: r.state, ownerAlive: r.owner_alive === true, ageMs: r.age_ms }));
	}

	/**
	 * Runs fn holding a database-wide advisory lock (every queen's claims take
	 * the same one), after the tail has caught up, and until what fn changed
	 * is committed: two queens never decide on the same state. `tryOnly`:
	 * skip (null) when another queen holds it.
	 */
	async withLock<T>(key: number, fn: () => T | Promise<T>, tryOnly = false): Promise<T | null> {
		// One at a time in this queen first: waiters on the database's lock would each hold one of the
		// pool's connections, and the holder would find none left to catch up or commit with.
		const prev = this.localLocks.get(key) ?? Promise.resolve();
		if (tryOnly && this.localLocks.has(key)) return null;
		let done!: () => void;
		const mine = new Promise<void>((r) => {
			done = r;
		});
		const chain = prev.then(() => mine);
		this.localLocks.set(key, chain);
		await prev;
		try {
			return await this.withDbLock(key, fn, tryOnly);
		} finally {
			done();
			if (this.localLocks.get(key) === chain) this.localLocks.delete(key);
		}
	}

	private readonly localLocks = new Map<number, Promise<void>>();

	private async withDbLock<T>(key: number, fn: () => T | Promise<T>, tryOnly: boolean): Promise<T | null> {
		const c = await this.pool.connect();
		const quiet = () => {};
		c.on("error", quiet);
		let broken = false;
		try {
			try {
				if (tryOnly) {
					if (!(await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [key])).rows[0]!.ok) return null;
				} else await c.query("SELECT pg_advisory_lock($1)", [key]);
			} catch (err) {
				// Timed out waiting (query_timeout): the server still waits, and would take the lock for a session
				// back in the pool that no one unlocks, stopping every queen's claims and placements for good (the
				// soak, seeds 537384 and 799844: placements unanswered). The connection goes, and the lock with it.
				broken = true;
				throw err;
			}
			try {
				await this.catchUp();
				const out = await fn();
				await this.durable();
				return out;
			} finally {
				await c.query("SELECT pg_advisory_unlock($1)", [key]).catch(() => {
					broken = true;
				});
			}
		} finally {
			c.off("error", quiet);
			c.release(broken);
		}
	}

	/** Where other queens reach this one (its commands relay), written once it listens. */
	async advertise(url: string): Promise<void> {
		await this.atStart("advertising this queen's address", () => this.pool.query("UPDATE queens SET url = $2 WHERE id = $1", [this.o.queenId, url]));
	}

	/** The address of the live queen, not this one, that carries that run on; null when none does. */
	async runQueenUrl(runId: string): Promise<string | null> {
		const { rows } = await this.pool.query<{ url: string | null }>(
			`SELECT q.url FROM shard_runs r JOIN queens q ON q.id = r.owner
			  WHERE r.id = $1 AND q.id <> $2 AND now() - q.seen_at < $3 * interval '1 millisecond'`,
			[runId, this.o.queenId, QUEEN_GONE_MS],
		);
		return rows[0]?.url ?? null;
	}

	/** The address of the live queen, not this one, that hive is connected to; null when none is. */
	async queenUrlOf(hiveId: string): Promise<string | null> {
		const { rows } = await this.pool.query<{ url: string | null }>(
			`SELECT q.url FROM hives h JOIN queens q ON q.id = h.owner
			  WHERE h.id = $1 AND h.state IN ('ready', 'stale') AND q.id <> $2 AND now() - q.seen_at < $3 * interval '1 millisecond'`,
			[hiveId, this.o.queenId, QUEEN_GONE_MS],
		);
		return rows[0]?.url ?? null;
	}

	readonly waiters: SharedWaiters = {
		add: async (id, want) => {
			const { rows } = await this.pool.query<{ seq: string }>("INSERT INTO waiters (queen, id, want) VALUES ($1, $2, $3) RETURNING seq", [
				this.o.queenId,
				id,
				JSON.stringify(want),
			]);
			return Number(rows[0]!.seq);
		},
		remove: async (seqs) => {
			if (seqs.length > 0) await this.pool.query("DELETE FROM waiters WHERE seq = ANY($1::bigint[])", [seqs]);
		},
		keepOnly: async (live, upTo) => {
			const r = await this.pool.query("DELETE FROM waiters WHERE queen = $1 AND seq <= $2 AND seq <> ALL($3::bigint[])", [this.o.queenId, upTo, live]);
			return r.rowCount ?? 0;
		},
		others: async () => {
			// A queen that died left its rows: they hold nothing back (its clients are gone with it), and go.
			const { rows } = await this.pool.query<{ seq: string; id: string; want: unknown; alive: boolean }>(
				`SELECT w.seq, w.id, w.want, q.id IS NOT NULL AS alive
				   FROM waiters w LEFT JOIN queens q ON q.id = w.queen AND now() - q.seen_at < $2 * interval '1 millisecond'
				  WHERE w.queen <> $1 ORDER BY w.seq`,
				[this.o.queenId, QUEEN_GONE_MS],
			);
			const dead = rows.filter((r) => !r.alive).map((r) => r.seq);
			if (dead.length > 0) await this.pool.query("DELETE FROM waiters WHERE seq = ANY($1::bigint[])", [dead]);
			return rows.filter((r) => r.alive).map((r) => ({ seq: Number(r.seq), id: r.id, want: r.want }));
		},
	};

	async placementAnswer(key: string): Promise<KeyedPlacement | null> {
		const { rows } = await this.pool.query<{ answer: PlacementAnswer; body_hash: string | null; doubt_ms: number | null }>(
			"SELECT answer, body_hash, (extract(epoch FROM doubt_at) * 1000)::float8 AS doubt_ms FROM placements WHERE key = $1",
			[key],
		);
		const r = rows[0];
		return r ? { answer: r.answer, bodyHash: r.body_hash, doubtAt: r.doubt_ms } : null;
	}

	savePlacement(key: string, p: KeyedPlacement): void {
		this.write({
			sql: `INSERT INTO placements (key, answer, body_hash, doubt_at) VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000))
			      ON CONFLICT (key) DO UPDATE SET answer = EXCLUDED.answer, body_hash = EXCLUDED.body_hash, doubt_at = EXCLUDED.doubt_at
			      WHERE placements.doubt_at IS NOT NULL`,
			params: [key, JSON.stringify(p.answer), p.bodyHash, p.doubtAt],
		});
	}

	/** Keeps the newest `keep` events of the log (one queen at a time, from the sweep). */
	/**
	 * Drops events more than `keep` behind the newest. Every queen runs it,
	 * and reads the oldest id left afterwards: a resume from before it gets
	 * stream.reset, never a silent gap (a queen that has not pruned since
	 * another did also checks the replay itself: ids are gapless).
	 */
	async pruneEvents(keep: number): Promise<void> {
		await this.pool.query("DELETE FROM events WHERE id <= (SELECT last_id FROM event_counter) - $1", [keep]);
		const { rows } = await this.pool.query<{ first: string | null }>("SELECT min(id) AS first FROM events");
		this.firstEventId = rows[0]?.first == null ? null : Number(rows[0].first);
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
		const events = this.eventWrites;
		if (this.failed) throw this.failed;
		await this.commitWaiters.wait(this.queuedUnits);
		// And its events published (read back), so an answer is never ahead of the stream;
		// a commit of rows alone (a hive's renewal) needs no read.
		if (!(this.caughtUp < events && this.onBatch)) return;
		// Committed: only the read is left. One that failed for a moment (the pool's 5-s wait for a connection,
		// passed while this queen's loop stalled) is tried again for as long as a commit would be, not failed back:
		// a failed ack closes the hive's socket (1011) and it comes back with a full hello, 45-73 hives at once in
		// a 5,000-hive run (bench row 17).
		const deadline = performance.now() + (this.o.retryMs ?? RETRY_MS);
		for (;;) {
			try {
				await this.catchUp();
				return;
			} catch (err) {
				if (this.closed || this.failed || performance.now() >= deadline) throw err;
				await new Promise((r) => setTimeout(r, 250));
			}
		}
	}

	async close(): Promise<void> {
		await this.durable().catch(() => {});
		this.closed = true;
		if (this.tailTimer) clearInterval(this.tailTimer);
		await this.renewal?.stop();
		await this.tailing?.catch(() => {});
		// A clean stop: its hives are unknown to the other queens at once, not after QUEEN_GONE_MS; its waiters are gone.
		await this.pool.query("DELETE FROM queens WHERE id = $1", [this.o.queenId]).catch(() => {});
		await this.pool.query("DELETE FROM waiters WHERE queen = $1", [this.o.queenId]).catch(() => {});
		this.holder.release();
		await this.pool.end();
		await this.writer.end();
	}
}

/**
 * Callers waiting for a count (units committed, passes over the log) to
 * reach theirs. Counts are asked for in rising order (units queued, passes
 * started only grow), so the list stays sorted and the head is the next to go.
 */
class Waiters {
	private reached = 0;
	private readonly list: { at: number; resolve: () => void; reject: (err: Error) => void }[] = [];

	wait(at: number): Promise<void> {
		if (at <= this.reached) return Promise.resolve();
		return new Promise((resolve, reject) => {
			this.list.push({ at, resolve, reject });
		});
	}

	reach(n: number): void {
		this.reached = Math.max(this.reached, n);
		let i = 0;
		while (i < this.list.length && this.list[i]!.at <= this.reached) this.list[i++]!.resolve();
		if (i > 0) this.list.splice(0, i);
	}

	/** Those waiting for counts up to `upTo` (all by default) are told it failed. */
	fail(err: Error, upTo = Number.POSITIVE_INFINITY): void {
		let i = 0;
		while (i < this.list.length && this.list[i]!.at <= upTo) this.list[i++]!.reject(err);
		if (i > 0) this.list.splice(0, i);
	}
}

/**
 * pg.escapeLiteral's output (quotes and backslashes doubled, E'' when a
 * backslash is in it) by one native replace: its char-by-char concatenation
 * over rows of JSON was ~5 % of a queen's CPU at 5,000 hives.
 */
export function quoteLiteral(s: string): string {
	const body = `'${s.replace(/['\\]/g, "$&$&")}'`;
	return s.includes("\\") ? ` E${body}` : body;
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
		return quoteLiteral(String(v));
	});
}

function defaultFatal(err: Error): void {
	process.stderr.write(`queen: ${err.message}\n`);
	process.exit(1);
}
