import type { EventType, QueenEvent } from "@apiary/protocol";
import type { Store } from "./store.ts";

type Listener = (e: QueenEvent) => void;

/**
 * The event log: every change gets a strictly increasing id from SQLite and
 * is persisted in the same transaction as the change itself; listeners (SSE
 * subscribers) hear of it after the commit. Old events are pruned past
 * `keep` rows; replay reads from the table.
 */
export class EventLog {
	private readonly store: Store;
	private readonly listeners = new Set<Listener>();
	private pending: QueenEvent[] = [];
	private readonly keep: number;
	private appended = 0;
	lastId: number;

	constructor(store: Store, keep = 1_000_000) {
		this.store = store;
		this.keep = keep;
		const row = store.q("SELECT MAX(id) AS id FROM events").get() as { id: number | null };
		this.lastId = row.id ?? 0;
	}

	/** Call inside a store transaction; published by flush() after commit. */
	append(type: EventType, data: unknown, hiveId: string | null = null, workerId: string | null = null, now = new Date()): QueenEvent {
		const at = now.toISOString();
		const r = this.store.q("INSERT INTO events (type, at, hive_id, worker_id, data) VALUES (?, ?, ?, ?, ?)").run(type, at, hiveId, workerId, JSON.stringify(data));
		const e: QueenEvent = { id: Number(r.lastInsertRowid), type, at, hiveId, workerId, data };
		this.lastId = e.id;
		this.pending.push(e);
		if (++this.appended % 10_000 === 0) this.store.q("DELETE FROM events WHERE id <= ?").run(this.lastId - this.keep);
		return e;
	}

	/** Publish what the last transaction appended. */
	flush(): void {
		const batch = this.pending;
		this.pending = [];
		for (const e of batch) for (const l of this.listeners) l(e);
	}

	discard(): void {
		this.pending = [];
	}

	subscribe(l: Listener): () => void {
		this.listeners.add(l);
		return () => this.listeners.delete(l);
	}

	get subscribers(): number {
		return this.listeners.size;
	}

	/** Persisted events after `id`, oldest first. */
	since(id: number, limit = 10_000): QueenEvent[] {
		const rows = this.store.q("SELECT id, type, at, hive_id, worker_id, data FROM events WHERE id > ? ORDER BY id LIMIT ?").all(id, limit) as {
			id: number;
			type: EventType;
			at: string;
			hive_id: string | null;
			worker_id: string | null;
			data: string;
		}[];
		return rows.map((r) => ({ id: r.id, type: r.type, at: r.at, hiveId: r.hive_id, workerId: r.worker_id, data: JSON.parse(r.data) }));
	}

	/** The oldest id still in the log (for telling a resumer it asked for too old a point). */
	firstId(): number | null {
		return (this.store.q("SELECT MIN(id) AS id FROM events").get() as { id: number | null }).id;
	}
}
