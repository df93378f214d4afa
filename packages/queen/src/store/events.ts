import type { SqliteDb } from "./sqlite.ts";

interface EventReads {
	/** The highest id logged, or 0. */
	lastLoggedId(): number;
	/** The lowest id still logged, or null when the log is empty. */
	firstLoggedId(): number | null;
	/** Batches holding ids in (after, before), oldest first, as JSON array texts: about `limit` events or more. */
	batchesBetween(after: number, before: number, limit: number): Promise<string[]>;
}

/** One queen numbers its events itself (SQLite): one row per transaction's events, already serialized, plus the id reservation. */
export interface NumberedEventTable extends EventReads {
	/** Ids reserved ahead of use (see EventLog), or 0. */
	reservedUpTo(): number;
	saveReservation(upTo: number): void;
	/** A batch of events as a JSON array text, ids first..last. */
	insertBatch(firstId: number, lastId: number, json: string): void;
	/** Drops batches wholly at or below `lastId`. */
	pruneUpTo(lastId: number): void;
}

/**
 * Several queens on one database: events are numbered by the database in
 * the committing transaction (a JSON array of events without ids), and each
 * queen publishes them when it reads them back. Ids are gapless.
 */
export interface CommitNumberedEventTable extends EventReads {
	insertUnnumbered(json: string, count: number): void;
}

/** The durable event log. */
export type EventTable = NumberedEventTable | CommitNumberedEventTable;

export const numberedAtCommit = (t: EventTable): t is CommitNumberedEventTable => "insertUnnumbered" in t;

export function sqliteEvents(db: SqliteDb): NumberedEventTable {
	return {
		lastLoggedId: () => (db.q("SELECT MAX(last_id) AS id FROM event_batches").get() as { id: number | null }).id ?? 0,
		firstLoggedId: () => (db.q("SELECT MIN(first_id) AS id FROM event_batches").get() as { id: number | null }).id,
		reservedUpTo: () => (db.q("SELECT value FROM meta WHERE key = 'event_ids_reserved'").get() as { value: number } | undefined)?.value ?? 0,
		saveReservation: (upTo) =>
			void db.run("INSERT INTO meta (key, value) VALUES ('event_ids_reserved', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", upTo),
		insertBatch: (first, last, json) => void db.run("INSERT INTO event_batches (first_id, last_id, events) VALUES (?, ?, ?)", first, last, json),
		pruneUpTo: (lastId) => void db.run("DELETE FROM event_batches WHERE last_id <= ?", lastId),
		async batchesBetween(after, before, limit) {
			const out: string[] = [];
			let n = 0;
			for (const r of db
				.q("SELECT first_id, last_id, events FROM event_batches WHERE last_id > ? AND first_id < ? ORDER BY first_id")
				.iterate(after, before) as Iterable<{ first_id: number; last_id: number; events: string }>) {
				out.push(r.events);
				n += r.last_id - r.first_id + 1;
				if (n >= limit) break;
			}
			return out;
		},
	};
}
