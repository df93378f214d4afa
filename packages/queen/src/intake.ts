// The queen's intake of hive messages (issue #23). A socket's messages are
// read in the poll phase all at once: thousands of heartbeats in one go kept
// the loop from its timers, its HTTP and the spawns and exits waiting behind
// them, so a queen past its capacity answered lifecycle messages seconds late.
// Here heartbeats wait in a queue per hive and are applied in slices of a few
// milliseconds, one hive's at a time in turn; between slices the loop serves
// everything else. A hive's spawn, exit or reply goes before other hives'
// heartbeats (after its own, whose order it keeps: a first snapshot is never
// overtaken). Byes wait their turn too: five thousand hives leaving at once,
// each bye evicting 50 workers, held the loop for seconds. A hive's queue is
// bounded: past `maxPerSource` its socket is paused (TCP pushes back on it)
// until the queue is half drained. So is the whole: past `maxBytes` waiting,
// a source with two messages waiting is paused until its queue is applied
// (3,300 hives × 16 heartbeats of 16 KB, 850 MB, were one queen's heap in
// the 10,000-hive run). Mechanism only: which message waits, and which is
// kept when its socket closes, is the caller's to say.

interface Item {
	/** Waits its turn (a heartbeat, a bye); else goes before every other source's waiting messages. */
	waits: boolean;
	/** Still run when its source closes with it waiting (a bye, an exit; not a heartbeat, which the hive sends again). */
	kept: boolean;
	/** Marked by the caller (a heartbeat the pace governs): counted in `marked`. */
	marked: boolean;
	bytes: number;
	run: () => void;
	at: number;
}

interface Queue {
	items: Item[];
	/** How many of `items` do not wait their turn. */
	lifecycle: number;
	paused: boolean;
}

export interface IntakeOptions<K> {
	/** The longest one slice runs before the loop gets a turn (default 20 ms). */
	sliceMs?: number;
	/** How the next slice is scheduled (default setImmediate: after the loop's I/O and timers). */
	schedule?: (next: () => void) => void;
	now?: () => number;
	/** A message whose handler threw (it is dropped; the others go on). */
	onError?: (err: unknown) => void;
	/** A source with this many messages waiting is paused until half of them are applied (default 16). */
	maxPerSource?: number;
	/** Past this many bytes waiting in all, a source with two waiting is paused until its queue is applied (default 256 MiB). */
	maxBytes?: number;
	pause?: (source: K) => void;
	resume?: (source: K) => void;
}

export interface OfferOptions {
	/** Still run when its source closes first (default: it does not wait). */
	kept?: boolean;
	/** Counted in `marked` while it waits. */
	marked?: boolean;
	/** Its size, counted against `maxBytes` while it waits. */
	bytes?: number;
}

export class Intake<K> {
	private readonly queues = new Map<K, Queue>();
	/** Sources with heartbeats waiting, in turn order (a Set keeps insertion order: rotate by delete and add). */
	private readonly turns = new Set<K>();
	/** Sources with a lifecycle message waiting: served first. */
	private readonly urgent = new Set<K>();
	private scheduled = false;
	private count = 0;
	private markedCount = 0;
	private waitingBytes = 0;
	private readonly sliceMs: number;
	private readonly schedule: (next: () => void) => void;
	private readonly now: () => number;
	private readonly onError: (err: unknown) => void;
	private readonly o: IntakeOptions<K>;
	private readonly maxPerSource: number;
	private readonly maxBytes: number;

	constructor(o: IntakeOptions<K> = {}) {
		this.o = o;
		this.maxPerSource = o.maxPerSource ?? 16;
		this.maxBytes = o.maxBytes ?? 256 << 20;
		this.sliceMs = o.sliceMs ?? 20;
		this.schedule = o.schedule ?? ((next) => setImmediate(next));
		this.now = o.now ?? (() => performance.now());
		this.onError = o.onError ?? (() => {});
	}

	/** Messages waiting. */
	get waiting(): number {
		return this.count;
	}

	/** Bytes waiting, as their callers gave them. */
	get bytes(): number {
		return this.waitingBytes;
	}

	/** Messages waiting that their caller marked (the queen: heartbeats the pace governs, so what a slower pace would relieve). */
	get marked(): number {
		return this.markedCount;
	}

	/** How long the oldest waiting message has waited (0 with none). */
	oldestWaitMs(): number {
		let oldest = Number.POSITIVE_INFINITY;
		for (const q of this.queues.values()) oldest = Math.min(oldest, q.items[0]!.at);
		return this.count === 0 ? 0 : Math.max(0, this.now() - oldest);
	}

	/** One message of `source`. One that does not wait, from a source with nothing waiting, runs now; the rest are queued. */
	offer(source: K, waits: boolean, run: () => void, o: OfferOptions = {}): void {
		const { kept = !waits, marked = false, bytes = 0 } = o;
		let q = this.queues.get(source);
		if (!q && !waits) {
			this.call(run);
			return;
		}
		if (!q) {
			q = { items: [], lifecycle: 0, paused: false };
			this.queues.set(source, q);
			this.turns.add(source);
		}
		q.items.push({ waits, kept, marked, bytes, run, at: this.now() });
		this.count++;
		this.waitingBytes += bytes;
		if (marked) this.markedCount++;
		if (!waits) {
			q.lifecycle++;
			this.urgent.add(source);
		}
		if (!q.paused && (q.items.length >= this.maxPerSource || (this.waitingBytes > this.maxBytes && q.items.length >= 2))) {
			q.paused = true;
			this.o.pause?.(source);
		}
		this.kick();
	}

	/**
	 * A source gone (its socket closed): what it sent that is kept still runs
	 * in its turn, in order; the rest is dropped. In its turn, not now: five
	 * thousand hives that send bye and close at once would otherwise be
	 * applied back to back in their close events.
	 */
	close(source: K): void {
		const q = this.queues.get(source);
		if (!q) return;
		const kept = q.items.filter((i) => i.kept);
		for (const i of q.items) if (!i.kept) this.gone(i);
		q.items = kept;
		if (kept.length === 0) this.forget(source);
	}

	private forget(source: K): Queue | undefined {
		const q = this.queues.get(source);
		if (!q) return undefined;
		for (const i of q.items) this.gone(i);
		this.queues.delete(source);
		this.turns.delete(source);
		this.urgent.delete(source);
		return q;
	}

	private kick(): void {
		if (this.scheduled || this.count === 0) return;
		this.scheduled = true;
		this.schedule(() => this.slice());
	}

	private slice(): void {
		this.scheduled = false;
		const end = this.now() + this.sliceMs;
		do {
			const urgent = this.first(this.urgent);
			if (urgent !== undefined) {
				// Its messages in order up to and including its first lifecycle message.
				let item: Item | undefined;
				do item = this.take(urgent);
				while (item?.waits);
				continue;
			}
			const next = this.first(this.turns);
			if (next === undefined) break;
			this.take(next);
			// Its next heartbeat waits for every other hive's turn.
			if (this.turns.delete(next)) this.turns.add(next);
		} while (this.count > 0 && this.now() < end);
		this.kick();
	}

	/** Runs the source's oldest message; forgets the source once it has none. */
	private take(source: K): Item | undefined {
		const q = this.queues.get(source);
		const item = q?.items.shift();
		if (!q || !item) return undefined;
		this.gone(item);
		if (!item.waits && --q.lifecycle === 0) this.urgent.delete(source);
		if (q.items.length === 0) this.forget(source);
		if (q.paused && q.items.length <= this.maxPerSource / 2 && (q.items.length === 0 || this.waitingBytes <= this.maxBytes)) {
			q.paused = false;
			this.o.resume?.(source);
		}
		this.call(item.run);
		return item;
	}

	/** An item no longer waiting (run or dropped): out of every count. */
	private gone(i: Item): void {
		this.count--;
		if (i.marked) this.markedCount--;
		this.waitingBytes -= i.bytes;
	}

	private call(run: () => void): void {
		try {
			run();
		} catch (err) {
			this.onError(err);
		}
	}

	private first(set: Set<K>): K | undefined {
		for (const k of set) return k;
		return undefined;
	}
}
