import type { ExitRecord } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

export interface ExitTable {
	/** Records an exit once per (hive, worker, start); false when it was already there (a resend). */
	insert(hiveId: string, workerId: string, startedAt: string, exit: ExitRecord): boolean;
	of(hiveId: string, workerId: string): Promise<ExitRecord[]>;
	/** Drops exit records of runs started before `before` (ISO). */
	prune(before: string): void;
	/** Several queens: an exit another queen recorded, so a resend here is known as one. */
	remember?(hiveId: string, workerId: string, startedAt: string): void;
}

export function sqliteExits(db: SqliteDb): ExitTable {
	return {
		insert: (hiveId, workerId, startedAt, exit) =>
			db.run("INSERT OR IGNORE INTO exits (hive_id, worker_id, started_at, record) VALUES (?, ?, ?, ?)", hiveId, workerId, startedAt, JSON.stringify(exit))
				.changes > 0,
		of: async (hiveId, workerId) =>
			(db.q("SELECT record FROM exits WHERE hive_id = ? AND worker_id = ? ORDER BY started_at").all(hiveId, workerId) as { record: string }[]).map(
				(r) => JSON.parse(r.record) as ExitRecord,
			),
		prune: (before) => void db.run("DELETE FROM exits WHERE started_at < ?", before),
	};
}
