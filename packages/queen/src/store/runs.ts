import type { RunSummary } from "../advise/run.ts";
import type { SqliteDb } from "./sqlite.ts";

/** Right-sizing's history: one row per run, keyed by profile and the chosen labels, the newest kept per key. */
export interface RunTable {
	insert(key: string, run: RunSummary): void;
	/** Every kept run, oldest first. */
	all(): { key: string; run: RunSummary }[];
	/** Keeps the newest `keep` runs of `key`. */
	trim(key: string, keep: number): void;
	/** Removes every run of `key` (a key pushed out by the bound on keys). */
	dropKey(key: string): void;
}

export function sqliteRuns(db: SqliteDb): RunTable {
	return {
		insert: (key, run) => void db.run("INSERT INTO runs (key, run) VALUES (?, ?)", key, JSON.stringify(run)),
		all: () =>
			(db.q("SELECT key, run FROM runs ORDER BY seq").all() as { key: string; run: string }[]).map((r) => ({
				key: r.key,
				run: JSON.parse(r.run) as RunSummary,
			})),
		trim: (key, keep) =>
			void db.run("DELETE FROM runs WHERE key = ? AND seq <= (SELECT seq FROM runs WHERE key = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)", key, key, keep),
		dropKey: (key) => void db.run("DELETE FROM runs WHERE key = ?", key),
	};
}
