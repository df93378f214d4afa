import type { SharedWaiters } from "../store/store.ts";
import type { Want } from "./choose.ts";
import type { HiveSet } from "./waiters.ts";

// First come, first served across queens (PostgreSQL): each queen writes its
// waiters to one table whose sequence orders them fleet-wide, and, under the
// claims lock, reads the other queens' before it places anything. A request
// then leaves to every earlier waiter, on any queen, the hives it could use,
// as it does to its own queen's (waiters.ts). On SQLite there is one queen
// and nothing here does anything.

interface Other {
	seq: number;
	want: Want;
	eligible: Set<string> | null;
	version: number;
}

export class FleetWaiters {
	private readonly shared: SharedWaiters | undefined;
	private readonly eligible: (want: Want) => Set<string>;
	/** The other queens' waiters, in fleet order (as of the last refresh). */
	private others: Other[] = [];
	/** Each hive: the first of them (lowest seq) that could use it. */
	private firstFor = new Map<string, number>();
	private version = 0;

	constructor(shared: SharedWaiters | undefined, eligible: (want: Want) => Set<string>) {
		this.shared = shared;
		this.eligible = eligible;
	}

	get on(): boolean {
		return this.shared !== undefined;
	}

	/** The fleet's hives or GPUs changed: which hives each could use is recomputed. */
	fleetChanged(): void {
		this.version++;
	}

	/** Joins in flight: a sweep meanwhile could take a row whose seq this queen has not been told yet. */
	private joining = 0;
	/** The highest seq a join returned: rows above it may be joins in flight, never swept. */
	private maxSeen = 0;

	/** A place in the fleet's order for a waiter of this queen (undefined on SQLite). */
	async join(id: string, want: Want): Promise<number | undefined> {
		if (!this.shared) return undefined;
		this.joining++;
		try {
			const seq = await this.shared.add(id, want);
			this.maxSeen = Math.max(this.maxSeen, seq);
			return seq;
		} finally {
			this.joining--;
		}
	}

	/**
	 * Removes this queen's rows that no waiter of it holds: a leave that failed (the database timed out)
	 * would otherwise keep holding hives back from every other queen's placements for as long as this
	 * queen lives (the soak, seed 799844: runs' shards waited for ever). Returns how many went.
	 */
	async sweep(live: (number | undefined)[]): Promise<number> {
		if (!this.shared || this.joining > 0 || this.maxSeen === 0) return 0;
		return this.shared.keepOnly(
			live.filter((s): s is number => s !== undefined),
			this.maxSeen,
		);
	}

	/** These waiters of this queen left. */
	async leave(seqs: (number | undefined)[]): Promise<void> {
		const given = seqs.filter((s): s is number => s !== undefined);
		if (given.length > 0) await this.shared?.remove(given);
	}

	/** Reads the other queens' waiters again (under the claims lock, so no placement runs meanwhile). */
	async refresh(): Promise<void> {
		if (!this.shared) return;
		const rows = await this.shared.others();
		const known = new Map(this.others.map((o) => [o.seq, o]));
		this.others = rows.map((r) => known.get(r.seq) ?? { seq: r.seq, want: r.want as Want, eligible: null, version: -1 });
		this.firstFor = new Map();
		for (const o of this.others) for (const h of this.hivesOf(o)) if (!this.firstFor.has(h)) this.firstFor.set(h, o.seq);
	}

	/** The hives some other queen's waiter ahead of `seq` could use (a new request: all of them). */
	ahead(seq = Number.POSITIVE_INFINITY): HiveSet {
		return { has: (h) => (this.firstFor.get(h) ?? Number.POSITIVE_INFINITY) < seq };
	}

	/** For a pass in order: the hives of the other queens' waiters, each with its seq. */
	*inOrder(): Generator<{ seq: number; hives: Set<string> }> {
		for (const o of this.others) yield { seq: o.seq, hives: this.hivesOf(o) };
	}

	get size(): number {
		return this.others.length;
	}

	private hivesOf(o: Other): Set<string> {
		if (!o.eligible || o.version !== this.version) {
			o.eligible = this.eligible(o.want);
			o.version = this.version;
		}
		return o.eligible;
	}
}

/** Either set. */
export function union(a: HiveSet, b: HiveSet): HiveSet {
	return { has: (h) => a.has(h) || b.has(h) };
}
