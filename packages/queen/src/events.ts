import type { EventType, QueenEvent } from "@apiary/protocol";
import { type EventTable, numberedAtCommit } from "./store/events.ts";

type Listener = (e: QueenEvent) => void;

export interface EventLogOptions {
	/** Durable events kept in SQLite before old batches are pruned. */
	keep?: number;
	/** Recent lifecycle events kept in memory for resuming subscribers. */
	recent?: number;
}

// Each event is serialized at most once, when first needed (persisted, or
// sent to a subscriber), and that text is what the database stores and every
// SSE subscriber is sent. A stats sample nobody is listening to is never
// serialized at all.
const serialized = new WeakMap<QueenEvent, string>();

/** The event as JSON text (cached). */
export function eventJson(e: QueenEvent): string {
	let s = serialized.get(e);
	if (s === undefined) {
		s = JSON.stringify(e);
		serialized.set(e, s);
	}
	return s;
}

/**
 * Stats samples are hot state: a new one supersedes the last (subscribers
 * coalesce them too), so they are kept in memory only. Writing them would put
 * 50 rows' worth of JSON on disk per heartbeat and, at fleet scale, push every
 * lifecycle event out of the retained log within seconds.
 */
export const isDurable = (type: EventType): boolean => type !== "worker.updated";

/** Ids handed out before the reservation in the database is extended (a crash skips at most this many). */
const ID_BLOCK = 1_000_000;

/**
 * The event log. Every change gets a strictly increasing id. Durable events
 * are persisted in the same transaction as the change itself, the events of
 * one transaction (a heartbeat's worth) as one row of `event_batches` (the
 * `events` view shows them one per row); old batches are pruned past `keep`.
 * Durable events are also kept in a bounded in-memory window, which serves
 * resumes that fall inside it. Stats samples are not: the registry keeps each
 * worker's latest, and a resume gets those after its cursor (coalesced per
 * worker, latest wins, as a live subscriber's queue does). At 100,000 workers a
 * window of samples covered half a second and was most of what the queen's
 * heap promoted and collected. Listeners (SSE subscribers) hear of events
 * after the commit.
 *
 * Ids outlive the process although `worker.updated` is never written: the
 * highest id that may have been handed out is reserved in `meta` ahead of
 * use, and a restart continues above it (after a clean stop, exactly where it
 * left off).
 */
export class EventLog {
	private readonly table: EventTable;
	private readonly watchers = new Set<(batch: readonly QueenEvent[]) => void>();
	private readonly listeners = new Set<Listener>();
	private pending: QueenEvent[] = [];
	private persisted = 0;
	private at = "";
	private readonly keep: number;
	private readonly recentLimit: number;
	private recent: QueenEvent[] = [];
	private batches = 0;
	/** Events published since start, by type (for /metrics). */
	readonly counts = new Map<EventType, number>();
	/** Ids up to this are reserved on disk (committed). */
	private reserved: number;
	/** …and up to this once the running transaction commits. */
	private reserving: number;
	lastId: number;
	/**
	 * Several queens on one database: durable events get their ids in the
	 * committing transaction, and are published when read back (committed());
	 * stats samples, never stored, go out at once with the id of the last
	 * event published before them.
	 */
	readonly numberedAtCommit: boolean;

	constructor(store: { events: EventTable }, o: EventLogOptions = {}) {
		this.table = store.events;
		this.keep = o.keep ?? 1_000_000;
		this.recentLimit = o.recent ?? 10_000;
		const t = this.table;
		this.numberedAtCommit = numberedAtCommit(t);
		this.lastId = numberedAtCommit(t) ? t.lastLoggedId() : Math.max(t.lastLoggedId(), t.reservedUpTo());
		this.reserved = this.lastId;
		this.reserving = this.lastId;
	}

	/** Call inside a store transaction; persist() writes it, flush() publishes it after commit. */
	append(type: EventType, data: unknown, hiveId: string | null = null, workerId: string | null = null): QueenEvent {
		// One timestamp per transaction: its events happen at the same instant.
		if (this.pending.length === 0) this.at = new Date().toISOString();
		if (this.numberedAtCommit) {
			// 0: numbered by the database at commit (a sample keeps the last published id).
			const e: QueenEvent = { id: isDurable(type) ? 0 : this.lastId, type, at: this.at, hiveId, workerId, data };
			this.pending.push(e);
			return e;
		}
		const e: QueenEvent = { id: this.lastId + 1, type, at: this.at, hiveId, workerId, data };
		this.lastId = e.id;
		this.pending.push(e);
		return e;
	}

	/** Write the durable events appended since the last persist(), as one row; inside the transaction. */
	persist(): void {
		const batch: QueenEvent[] = [];
		for (let i = this.persisted; i < this.pending.length; i++) {
			const e = this.pending[i]!;
			if (isDurable(e.type)) batch.push(e);
		}
		this.persisted = this.pending.length;
		const t = this.table;
		if (numberedAtCommit(t)) {
			if (batch.length > 0) t.insertUnnumbered(JSON.stringify(batch.map(({ id: _id, ...e }) => e)), batch.length);
			return;
		}
		if (this.lastId > this.reserving) {
			this.reserving = this.lastId + ID_BLOCK;
			t.saveReservation(this.reserving);
		}
		if (batch.length === 0) return;
		t.insertBatch(batch[0]!.id, batch.at(-1)!.id, `[${batch.map(eventJson).join(",")}]`);
		if (++this.batches % 1000 === 0) t.pruneUpTo(this.lastId - this.keep);
	}

	/** Publish what the last transaction appended. */
	flush(): void {
		let batch = this.pending;
		this.pending = [];
		this.persisted = 0;
		this.reserved = this.reserving;
		// Numbered at commit: only the samples now; the rest when committed() reads them back.
		if (this.numberedAtCommit) batch = batch.filter((e) => !isDurable(e.type));
		this.publish(batch);
	}

	/** Events read back from the database in id order (several queens): published as they are. */
	committed(batch: readonly QueenEvent[]): void {
		if (batch.length === 0) return;
		this.lastId = Math.max(this.lastId, batch.at(-1)!.id);
		this.publish(batch);
	}

	private publish(batch: readonly QueenEvent[]): void {
		if (batch.length === 0) return;
		for (const e of batch) {
			if (isDurable(e.type)) this.recent.push(e);
			this.counts.set(e.type, (this.counts.get(e.type) ?? 0) + 1);
		}
		// Trim in chunks, so the window costs O(1) per event.
		if (this.recent.length > this.recentLimit * 1.25) this.recent = this.recent.slice(this.recent.length - this.recentLimit);
		for (const e of batch) for (const l of this.listeners) l(e);
		if (batch.length > 0) for (const w of this.watchers) w(batch);
	}

	/** The transaction rolled back: its events never happened. */
	discard(): void {
		if (this.pending.length > 0 && !this.numberedAtCommit) this.lastId = this.pending[0]!.id - 1;
		this.pending = [];
		this.persisted = 0;
		this.reserving = this.reserved;
	}

	/** The queen's own reactions to committed changes (placement's queue), once per batch: not SSE subscribers. */
	watch(w: (batch: readonly QueenEvent[]) => void): () => void {
		this.watchers.add(w);
		return () => this.watchers.delete(w);
	}

	subscribe(l: Listener): () => void {
		this.listeners.add(l);
		return () => this.listeners.delete(l);
	}

	get subscribers(): number {
		return this.listeners.size;
	}

	/**
	 * Durable events after `id` up to `upTo`, oldest first, at most about
	 * `limit`: from memory when the window reaches back that far, else from
	 * the database up to where the window begins. Samples are not here
	 * (Registry.samplesAfter).
	 */
	async since(id: number, limit = 10_000, upTo = Number.POSITIVE_INFINITY): Promise<QueenEvent[]> {
		const out: QueenEvent[] = [];
		const windowStart = this.recent[0]?.id ?? this.lastId + 1;
		if (id + 1 < windowStart) {
			let first: number | null = null;
			for (const json of await this.table.batchesBetween(id, windowStart, limit)) {
				for (const e of JSON.parse(json) as QueenEvent[]) {
					if (e.id <= id || e.id >= windowStart) continue;
					first ??= e.id;
					if (e.id <= upTo) out.push(e);
				}
				if (out.length >= limit) break;
			}
			// Numbered at commit, ids are gapless: a missing next id was pruned
			// (by another queen, since this one last looked).
			if (this.numberedAtCommit && (first ?? windowStart) > id + 1) throw new EventsGone(id);
			if (out.length >= limit) return out;
		}
		// Read after the await: events published meanwhile are in the window.
		const recent = this.recent;
		for (let i = firstAfter(recent, Math.max(id, out.at(-1)?.id ?? id)); i < recent.length && out.length < limit && recent[i]!.id <= upTo; i++)
			out.push(recent[i]!);
		return out;
	}

	/**
	 * The first id a resume can still be served from: the oldest durable
	 * batch or the start of the memory window, whichever is older; past the
	 * head when nothing is kept yet.
	 */
	oldestRetained(): number {
		const durable = this.table.firstLoggedId();
		const memory = this.recent[0]?.id ?? null;
		const candidates = [durable, memory].filter((x): x is number => x !== null);
		return candidates.length === 0 ? this.lastId + 1 : Math.min(...candidates);
	}

	/** On a clean stop: the next start continues right after the last id. */
	close(): void {
		const t = this.table;
		if (!numberedAtCommit(t)) t.saveReservation(this.lastId);
	}
}

/** Events after a resume id are no longer in the log: the subscriber gets stream.reset. */
export class EventsGone extends Error {
	override name = "EventsGone";
	constructor(after: number) {
		super(`events after ${after} are no longer in the log`);
	}
}

/** Index of the first event with an id above `id` (ids are increasing). */
function firstAfter(events: QueenEvent[], id: number): number {
	let lo = 0;
	let hi = events.length;
	while (lo < hi) {
		const mid = (lo + hi) >>> 1;
		if (events[mid]!.id <= id) lo = mid + 1;
		else hi = mid;
	}
	return lo;
}
