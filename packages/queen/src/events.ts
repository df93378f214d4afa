import type { EventType, QueenEvent } from "@apiary/protocol";
import type { Store } from "./store.ts";

type Listener = (e: QueenEvent) => void;

// Each event is serialized once, when it is logged, and that text is what the
// database stores and every SSE subscriber is sent.
const serialized = new WeakMap<QueenEvent, string>();

function frame(e: Omit<QueenEvent, "data">, dataJson: string): string {
	return `{"id":${e.id},"type":"${e.type}","at":"${e.at}","hiveId":${JSON.stringify(e.hiveId)},"workerId":${JSON.stringify(e.workerId)},"data":${dataJson}}`;
}

/** The event as JSON text (cached; built from the stored text for replayed events). */
export function eventJson(e: QueenEvent): string {
	let s = serialized.get(e);
	if (s === undefined) {
		s = JSON.stringify(e);
		serialized.set(e, s);
	}
	return s;
}

/**
 * The event log: every change gets a strictly increasing id and is persisted
 * in the same transaction as the change itself; listeners (SSE subscribers)
 * hear of it after the commit. The events of one transaction (a heartbeat's
 * worth) are written as one row of `event_batches`, which is what keeps
 * ingest cheap; the `events` view shows them one per row. Old batches are
 * pruned past `keep` events.
 */
export class EventLog {
	private readonly store: Store;
	private readonly listeners = new Set<Listener>();
	private pending: QueenEvent[] = [];
	private persisted = 0;
	private readonly keep: number;
	private batches = 0;
	lastId: number;

	constructor(store: Store, keep = 1_000_000) {
		this.store = store;
		this.keep = keep;
		const row = store.q("SELECT MAX(last_id) AS id FROM event_batches").get() as { id: number | null };
		this.lastId = row.id ?? 0;
	}

	/** Call inside a store transaction; persist() writes it, flush() publishes it after commit. */
	append(type: EventType, data: unknown, hiveId: string | null = null, workerId: string | null = null, now = new Date()): QueenEvent {
		const e: QueenEvent = { id: this.lastId + 1, type, at: now.toISOString(), hiveId, workerId, data };
		serialized.set(e, frame(e, JSON.stringify(data)));
		this.lastId = e.id;
		this.pending.push(e);
		return e;
	}

	/** Write what was appended since the last persist(), as one row; inside the transaction. */
	persist(): void {
		const batch = this.pending.slice(this.persisted);
		if (batch.length === 0) return;
		this.persisted = this.pending.length;
		this.store.q("INSERT INTO event_batches (first_id, last_id, events) VALUES (?, ?, ?)").run(batch[0]!.id, batch.at(-1)!.id, `[${batch.map(eventJson).join(",")}]`);
		if (++this.batches % 1000 === 0) this.store.q("DELETE FROM event_batches WHERE last_id <= ?").run(this.lastId - this.keep);
	}

	/** Publish what the last transaction appended. */
	flush(): void {
		const batch = this.pending;
		this.pending = [];
		this.persisted = 0;
		for (const e of batch) for (const l of this.listeners) l(e);
	}

	/** The transaction rolled back: its events never happened. */
	discard(): void {
		if (this.pending.length > 0) this.lastId = this.pending[0]!.id - 1;
		this.pending = [];
		this.persisted = 0;
	}

	subscribe(l: Listener): () => void {
		this.listeners.add(l);
		return () => this.listeners.delete(l);
	}

	get subscribers(): number {
		return this.listeners.size;
	}

	/** Persisted events after `id`, oldest first, at most about `limit`. */
	since(id: number, limit = 10_000): QueenEvent[] {
		const out: QueenEvent[] = [];
		const rows = this.store.q("SELECT events FROM event_batches WHERE last_id > ? ORDER BY first_id").iterate(id) as Iterable<{ events: string }>;
		for (const r of rows) {
			for (const e of JSON.parse(r.events) as QueenEvent[]) if (e.id > id) out.push(e);
			if (out.length >= limit) break;
		}
		return out;
	}

	/** The oldest id still in the log. */
	firstId(): number | null {
		return (this.store.q("SELECT MIN(first_id) AS id FROM event_batches").get() as { id: number | null }).id;
	}
}
