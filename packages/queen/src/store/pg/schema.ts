import type pg from "pg";

// The queen's PostgreSQL schema, for several queens on one database (issue
// #12): versioned migrations applied at start under an advisory lock, so two
// queens starting at once on an empty database apply each version once; and
// event ids handed out by a counter row inside the committing transaction,
// so ids are gapless and visible in commit order (a sequence hands ids out
// before commit, and a reader polling by id would skip a slower writer's).

/** Migrations in order; a version once shipped is never edited, only followed. */
export const MIGRATIONS: readonly string[] = [
	`CREATE TABLE hives (id text PRIMARY KEY, instance_id text NOT NULL, state text NOT NULL, last_seen_at timestamptz, info jsonb NOT NULL);
	 CREATE TABLE workers (hive_id text NOT NULL, id text NOT NULL, state text NOT NULL, info jsonb NOT NULL, PRIMARY KEY (hive_id, id));
	 CREATE TABLE exits (hive_id text NOT NULL, worker_id text NOT NULL, started_at text NOT NULL, record jsonb NOT NULL, PRIMARY KEY (hive_id, worker_id, started_at));
	 CREATE TABLE gpus (hive_id text NOT NULL, uuid text NOT NULL, info jsonb NOT NULL, PRIMARY KEY (hive_id, uuid));
	 CREATE TABLE claims (id text PRIMARY KEY, holder text NOT NULL, gpus jsonb NOT NULL, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL);
	 CREATE TABLE runs (seq bigserial PRIMARY KEY, key text NOT NULL, run jsonb NOT NULL);
	 CREATE INDEX runs_by_key ON runs (key, seq);
	 CREATE TABLE event_counter (one boolean PRIMARY KEY DEFAULT true CHECK (one), last_id bigint NOT NULL);
	 INSERT INTO event_counter (last_id) VALUES (0);
	 CREATE TABLE events (id bigint PRIMARY KEY, type text NOT NULL, at timestamptz NOT NULL, hive_id text, worker_id text, data jsonb NOT NULL);`,
	`CREATE TABLE placements (key text PRIMARY KEY, answer jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`,
	// One queen per database (PgStore): the event ids it reserved ahead of use, as on SQLite.
	`CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);`,
	// Several queens: which queen wrote an event (the others apply it), and which serves a hive.
	`ALTER TABLE events ADD COLUMN origin text;
	 ALTER TABLE hives ADD COLUMN owner text;`,
	// The queens serving now, each renewing its row every second: a hive whose queen is gone is unknown.
	`CREATE TABLE queens (id text PRIMARY KEY, seen_at timestamptz NOT NULL);`,
	// A hive's latest stats samples, written with its 10-s renewal; `beat` orders the writes for the other queens' polls.
	`ALTER TABLE hives ADD COLUMN samples jsonb;
	 ALTER TABLE hives ADD COLUMN beat bigint;
	 CREATE SEQUENCE hive_beats;`,
	// Any queen answers for any hive: commands for a hive go to the queen it is connected to, at this address.
	`ALTER TABLE queens ADD COLUMN url text;`,
	// A key's request (a reuse with another body is refused) and, for a spawn whose answer was lost, since when it is in doubt.
	`ALTER TABLE placements ADD COLUMN body_hash text;
	 ALTER TABLE placements ADD COLUMN doubt_at timestamptz;`,
	// Exited workers leave memory after a retention and are read from here until the database's longer one.
	`CREATE INDEX workers_by_id ON workers (id);`,
	// Credentials with roles, honoured by every queen: the hash of each secret, never the secret.
	`CREATE TABLE tokens (id text PRIMARY KEY, role text NOT NULL, name text, hive text, hash text NOT NULL, created_at text NOT NULL,
	                      expires_at text, revoked_at text, enrolled_by text);`,
	// The audit trail, every queen's.
	`CREATE TABLE audit (id bigserial PRIMARY KEY, at text NOT NULL, actor text NOT NULL, role text, token_id text, remote text, op text NOT NULL,
	                     target text, outcome integer NOT NULL, detail text);`,
	// Placements waiting for capacity on every queen, in one order (seq): first come, first served fleet-wide.
	`CREATE TABLE waiters (seq bigserial PRIMARY KEY, queen text NOT NULL, id text NOT NULL, want jsonb NOT NULL, since timestamptz NOT NULL DEFAULT now());`,
	// Cordons and drains: apart from the hive's row, which its queen rewrites with every renewal.
	`CREATE TABLE drains (hive_id text PRIMARY KEY, drain jsonb NOT NULL);`,
	// Sharded runs, each kept whole.
	`CREATE TABLE shard_runs (id text PRIMARY KEY, key text UNIQUE, state text NOT NULL, created_at timestamptz NOT NULL, run jsonb NOT NULL);`,
	// Which queen carries a run on: a live queen's runs are its own; a gone queen's are taken over by another.
	`ALTER TABLE shard_runs ADD COLUMN owner text;
	 CREATE INDEX shard_runs_running ON shard_runs (state) WHERE state = 'running';`,
	// An exit reported to two queens (its hive moved before the first one's ack came) is logged once.
	`CREATE INDEX events_exited ON events (hive_id, worker_id) WHERE type = 'worker.exited';`,
	// A claim released by one queen while another, cut off from the database, expired it too is logged released once.
	`CREATE INDEX events_claim_released ON events ((data->'claim'->>'id')) WHERE type = 'claim.released';`,
];

/** Any constant the queens agree on: the advisory lock migrations take. */
const MIGRATION_LOCK = 70_700_001;

/** Applies the migrations a database lacks, in one transaction under an advisory lock; returns the versions it applied. */
export async function migrate(client: pg.ClientBase): Promise<number[]> {
	await client.query("BEGIN");
	try {
		await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
		await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
		const done = new Set((await client.query<{ version: number }>("SELECT version FROM schema_migrations")).rows.map((r) => r.version));
		const applied: number[] = [];
		for (let v = 1; v <= MIGRATIONS.length; v++) {
			if (done.has(v)) continue;
			await client.query(MIGRATIONS[v - 1]!);
			await client.query("INSERT INTO schema_migrations (version) VALUES ($1)", [v]);
			applied.push(v);
		}
		await client.query("COMMIT");
		return applied;
	} catch (err) {
		await client.query("ROLLBACK");
		throw err;
	}
}

export interface NewEvent {
	type: string;
	hiveId: string | null;
	workerId: string | null;
	data: unknown;
}

/**
 * Appends events inside the caller's open transaction, their ids taken from
 * the counter row: the row lock holds a second writer until this one commits,
 * so ids are gapless and become visible in order. Returns the ids given.
 */
export async function appendEvents(client: pg.ClientBase, events: readonly NewEvent[]): Promise<number[]> {
	if (events.length === 0) return [];
	const { rows } = await client.query<{ last_id: string }>("UPDATE event_counter SET last_id = last_id + $1 RETURNING last_id", [events.length]);
	const last = Number(rows[0]!.last_id);
	const first = last - events.length + 1;
	const ids = events.map((_, i) => first + i);
	await client.query(
		// Stamped on the database's clock, which every queen shares.
		"INSERT INTO events (id, type, at, hive_id, worker_id, data) SELECT i, t, now(), h, w, d FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[]) AS u(i, t, h, w, d)",
		[ids, events.map((e) => e.type), events.map((e) => e.hiveId), events.map((e) => e.workerId), events.map((e) => JSON.stringify(e.data))],
	);
	return ids;
}
