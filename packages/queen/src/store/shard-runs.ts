import type { RunView } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

/** Sharded runs (queen run --shards), each kept whole as JSON: a run is read and written as one. */
export interface ShardRunTable {
	/** Written in the transaction in progress. */
	save(run: RunView): void;
	/**
	 * A new run's row, written now (not with the transaction in progress) unless
	 * its idempotency key is taken: then the run that holds it. Two queens given
	 * the same key at once start one run.
	 */
	reserve(run: RunView): Promise<RunView | null>;
	/**
	 * Unfinished runs this queen is to carry on with from now: every one on a
	 * queen of its own (a restart); on a shared database, those whose queen is gone.
	 */
	adopt(): Promise<RunView[]>;
	/**
	 * Of these runs, which another queen has taken over (several queens: this
	 * one was taken for gone, e.g. cut off from the database a while). None
	 * on a queen of its own.
	 */
	takenOver?(ids: string[]): Promise<string[]>;
	find(id: string): Promise<RunView | null>;
	byKey(key: string): Promise<RunView | null>;
	list(state?: string, limit?: number): Promise<RunView[]>;
}

export function sqliteShardRuns(db: SqliteDb): ShardRunTable {
	const parse = (rows: { run: string }[]) => rows.map((r) => JSON.parse(r.run) as RunView);
	return {
		save: (r) =>
			void db.run(
				"INSERT INTO shard_runs (id, key, state, created_at, run) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state, run = excluded.run",
				r.id,
				r.idempotencyKey,
				r.state,
				r.createdAt,
				JSON.stringify(r),
			),
		reserve: async (r) => {
			const taken = r.idempotencyKey === null ? [] : (db.q("SELECT run FROM shard_runs WHERE key = ?").all(r.idempotencyKey) as { run: string }[]);
			if (taken.length > 0) return parse(taken)[0]!;
			db.run(
				"INSERT INTO shard_runs (id, key, state, created_at, run) VALUES (?, ?, ?, ?, ?)",
				r.id,
				r.idempotencyKey,
				r.state,
				r.createdAt,
				JSON.stringify(r),
			);
			return null;
		},
		adopt: async () => parse(db.q("SELECT run FROM shard_runs WHERE state = 'running' ORDER BY created_at").all() as { run: string }[]),
		find: async (id) => parse(db.q("SELECT run FROM shard_runs WHERE id = ?").all(id) as { run: string }[])[0] ?? null,
		byKey: async (key) => parse(db.q("SELECT run FROM shard_runs WHERE key = ?").all(key) as { run: string }[])[0] ?? null,
		list: async (state, limit = 100) =>
			parse(
				(state
					? db.q("SELECT run FROM shard_runs WHERE state = ? ORDER BY created_at DESC LIMIT ?").all(state, limit)
					: db.q("SELECT run FROM shard_runs ORDER BY created_at DESC LIMIT ?").all(limit)) as { run: string }[],
			),
	};
}
