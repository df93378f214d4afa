import type { GpuInfo } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

export interface GpuRow {
	hiveId: string;
	info: GpuInfo;
}

export interface GpuTable {
	all(): GpuRow[];
	save(hiveId: string, g: GpuInfo): void;
	/** A GPU its hive no longer reports. */
	remove(hiveId: string, uuid: string): void;
}

export function sqliteGpus(db: SqliteDb): GpuTable {
	return {
		all: () =>
			(db.q("SELECT hive_id, info FROM gpus").all() as { hive_id: string; info: string }[]).map((r) => ({
				hiveId: r.hive_id,
				info: JSON.parse(r.info) as GpuInfo,
			})),
		save: (hiveId, g) =>
			void db.run(
				"INSERT INTO gpus (hive_id, uuid, info) VALUES (?, ?, ?) ON CONFLICT(hive_id, uuid) DO UPDATE SET info = excluded.info",
				hiveId,
				g.uuid,
				JSON.stringify(g),
			),
		remove: (hiveId, uuid) => void db.run("DELETE FROM gpus WHERE hive_id = ? AND uuid = ?", hiveId, uuid),
	};
}
