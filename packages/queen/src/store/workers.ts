import type { QueenWorkerView } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

export interface WorkerTable {
	all(): QueenWorkerView[];
	/** Upsert by (hive, id); stats are hot state and not rewritten every tick by the caller. */
	save(v: QueenWorkerView): void;
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
	};
}
