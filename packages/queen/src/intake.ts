// The queen's intake of hive messages (issue #23). A socket's messages are
// read in the poll phase all at once: thousands of heartbeats in one go kept
// the loop from its timers, its HTTP and the spawns and exits waiting behind
// them, so a queen past its capacity answered lifecycle messages seconds late.
// Here heartbeats wait in a queue per hive and are applied in slices of a few
// milliseconds, one hive's at a time in turn; between slices the loop serves
// everything else. A hive's spawn, exit, reply or bye goes before other hives'
// heartbeats (after its own, whose order it keeps: a first snapshot is never
// overtaken). Mechanism only: what is a heartbeat is the caller's to say.

interface Item {
	heartbeat: boolean;
	run: () => void;
	at: number;
}

interface Queue {
	items: Item[];
	/** How many of `items` are not heartbeats. */
	lifecycle: number;
}

export interface IntakeOptions {
	/** The longest one slice runs before the loop gets a turn (default 20 ms). */
	sliceMs?: number;
	/** How the next slice is scheduled (default setImmediate: after the loop's I/O and timers). */
	schedule?: (next: () => void) => void;
	now?: () => number;
	/** A message whose handler threw (it is dropped; the others go on). */
	onError?: (err: unknown) => void;
}

export class Intake<K> {
	private readonly queues = new Map<K, Queue>();
	/** Sources with heartbeats waiting, in turn order (a Set keeps insertion order: rotate by delete and add). */
	private readonly turns = new Set<K>();
	/** Sources with a lifecycle message waiting: served first. */
	private readonly urgent = new Set<K>();
	private scheduled = false;
	private count = 0;
	private readonly sliceMs: number;
	private readonly schedule: (next: () => void) => void;
	private readonly now: () => number;
	private readonly onError: (err: unknown) => void;

	constructor(o: IntakeOptions = {}) {
		this.sliceMs = o.sliceMs ?? 20;
		this.schedule = o.schedule ?? ((next) => setImmediate(next));
		this.now = o.now ?? (() => performance.now());
		this.onError = o.onError ?? (() => {});
	}

	/** Messages waiting. */
	get waiting(): number {
		return this.count;
	}

	/** How long the oldest waiting message has waited (0 with none). */
	oldestWaitMs(): number {
		let oldest = Number.POSITIVE_INFINITY;
		for (const q of this.queues.values()) oldest = Math.min(oldest, q.items[0]!.at);
		return this.count === 0 ? 0 : Math.max(0, this.now() - oldest);
	}

	/** One message of `source`: a lifecycle message from a source with nothing waiting runs now; the rest wait their turn. */
	offer(source: K, heartbeat: boolean, run: () => void): void {
		let q = this.queues.get(source);
		if (!q && !heartbeat) {
			this.call(run);
			return;
		}
		if (!q) {
			q = { items: [], lifecycle: 0 };
			this.queues.set(source, q);
			this.turns.add(source);
		}
		q.items.push({ heartbeat, run, at: this.now() });
		this.count++;
		if (!heartbeat) {
			q.lifecycle++;
			this.urgent.add(source);
		}
		this.kick();
	}

	/** A source gone (its socket closed): what it sent and was not applied is dropped. */
	drop(source: K): void {
		const q = this.queues.get(source);
		if (!q) return;
		this.count -= q.items.length;
		this.queues.delete(source);
		this.turns.delete(source);
		this.urgent.delete(source);
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
				while (item?.heartbeat);
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
		this.count--;
		if (!item.heartbeat && --q.lifecycle === 0) this.urgent.delete(source);
		if (q.items.length === 0) this.drop(source);
		this.call(item.run);
		return item;
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
