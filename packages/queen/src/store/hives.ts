import type { Drain, DriverInfo, HiveState, HostFacts, PackedStats } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

export interface HiveRow {
	id: string;
	instanceId: string;
	state: HiveState;
	lastSeenAt: string | null;
	version: string;
	host: HostFacts;
	driver: DriverInfo;
	labels: Record<string, string>;
	/** Cordoned, draining or drained; null: schedulable. Its own table, written only by cordon, drain and uncordon (a hive's own row is rewritten by every renewal). */
	drain?: Drain | null;
	/** Several queens: its running workers' latest samples, written with its renewal (never on SQLite). */
	samples?: HiveSamples;
}

/** A hive's running workers' latest stats, packed as on the socket. */
export type HiveSamples = { id: string; startedAt: string; s: PackedStats }[];

export interface HiveTable {
	all(): HiveRow[];
	save(h: HiveRow): void;
	/** A hive's cordon or drain (null: lifted). */
	setDrain(id: string, drain: Drain | null): void;
	/** After a queen restart nobody is connected: every hive not lost or left is `unknown`. */
	markAllUnknown(): void;
}

export function sqliteHives(db: SqliteDb): HiveTable {
	return {
		all: () =>
			(
				db.q("SELECT h.id, h.instance_id, h.state, h.last_seen_at, h.info, d.drain FROM hives h LEFT JOIN drains d ON d.hive_id = h.id").all() as {
					id: string;
					instance_id: string;
					state: HiveState;
					last_seen_at: string | null;
					info: string;
					drain: string | null;
				}[]
			).map((r) => {
				const info = JSON.parse(r.info) as Pick<HiveRow, "version" | "host" | "driver"> & { labels?: Record<string, string> };
				return {
					id: r.id,
					instanceId: r.instance_id,
					state: r.state,
					lastSeenAt: r.last_seen_at,
					version: info.version,
					host: info.host,
					driver: info.driver,
					// Rows written before hives had labels have none.
					labels: info.labels ?? {},
					drain: r.drain === null ? null : (JSON.parse(r.drain) as Drain),
				};
			}),
		save: (h) =>
			void db.run(
				"INSERT INTO hives (id, instance_id, state, last_seen_at, info) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET instance_id = excluded.instance_id, state = excluded.state, last_seen_at = excluded.last_seen_at, info = excluded.info",
				h.id,
				h.instanceId,
				h.state,
				h.lastSeenAt,
				JSON.stringify({ version: h.version, host: h.host, driver: h.driver, labels: h.labels }),
			),
		setDrain: (id, drain) =>
			void (drain === null
				? db.run("DELETE FROM drains WHERE hive_id = ?", id)
				: db.run("INSERT INTO drains (hive_id, drain) VALUES (?, ?) ON CONFLICT(hive_id) DO UPDATE SET drain = excluded.drain", id, JSON.stringify(drain))),
		markAllUnknown: () => void db.run("UPDATE hives SET state = 'unknown' WHERE state NOT IN ('lost', 'left')"),
	};
}
