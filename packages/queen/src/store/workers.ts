import type { QueenWorkerView } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

export interface WorkerTable {
	all(): QueenWorkerView[];
	/** Upsert by (hive, id); stats are hot state and not rewritten every tick by the caller. */
	save(v: QueenWorkerView): void;
	/** Workers with this id (every hive, or one), from disk: those memory no longer keeps. */
	find(id: string, hive?: string): Promise<QueenWorkerView[]>;
	/** Drops workers that are not running and started before `before` (ISO): the database's longer retention. */
	prune(before: string): void;
}

export function sqliteWorkers(db: SqliteDb): WorkerTable {
	return {
		all: () => (db.q("SELECT info FROM workers").all() as { info: string }[]).map((r) => JSON.parse(r.info) as QueenWorkerView),
		save: (v) =>
			void db.run(
				"INSERT INTO workers (hive_id, id, state, info) VALUES (?, ?, ?, ?) ON CONFLICT(hive_id, id) DO UPDATE SET state = excluded.state, info = excluded.info",
				v.hiveId,
				v.id,
				v.state,
				JSON.stringify(v),
			),
		find: async (id, hive) =>
			(
				(hive === undefined
					? db.q("SELECT info FROM workers WHERE id = ?").all(id)
					: db.q("SELECT info FROM workers WHERE id = ? AND hive_id = ?").all(id, hive)) as { info: string }[]
			).map((r) => JSON.parse(r.info) as QueenWorkerView),
		prune: (before) => void db.run("DELETE FROM workers WHERE state <> 'running' AND json_extract(info, '$.startedAt') < ?", before),
	};
}
