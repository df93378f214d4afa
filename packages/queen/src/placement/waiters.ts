import type { Want } from "./choose.ts";

// The placements waiting for capacity, first come first served per set of
// hives, kept so that no step costs O(queue × fleet): each waiter's set of
// hives that could ever serve it is computed once and recomputed only when
// the fleet's hives or GPU inventory change (not on every heartbeat); for
// each hive, how many waiters could use it is kept as they come and go, so
// the hives a newcomer must leave to earlier waiters is a lookup. A probe
// once made 3,000 unplaceable waiters cost 16.7 s of queen CPU to add.

export interface Waiter<G> {
	seq: number;
	id: string;
	want: Want;
	since: number;
	deadline: number;
	resolve: (grant: G | null, why?: string) => void;
	/** Hives that could ever serve it (its hive or constraints, GPUs of its kind in number), free or not. */
	eligible: Set<string> | null;
	version: number;
	/** Several queens: its place in the fleet's order (fleet-waiters.ts). */
	fleetSeq?: number;
}

/** A set the placer may test hives against: `has` alone. */
export interface HiveSet {
	has(hive: string): boolean;
}

export class WaitQueue<G> {
	/** In arrival order (a Map iterates in insertion order; delete is O(1)). */
	private readonly waiters = new Map<number, Waiter<G>>();
	/** For each hive, how many waiters could use it. */
	private readonly wanted = new Map<string, number>();
	private seq = 0;
	private version = 0;
	/** The version every waiter's eligible set was last brought to. */
	private refreshed = 0;
	private readonly eligible: (want: Want) => Set<string>;

	/** `eligible`: the hives that could ever serve a want (O(fleet); called once per waiter per fleet change). */
	constructor(eligible: (want: Want) => Set<string>) {
		this.eligible = eligible;
	}

	get size(): number {
		return this.waiters.size;
	}

	/** In arrival order. */
	values(): IterableIterator<Waiter<G>> {
		return this.waiters.values();
	}

	/** The fleet's hives or GPUs changed: every waiter's eligible hives are recomputed when next needed. */
	fleetChanged(): void {
		this.version++;
	}

	add(w: Omit<Waiter<G>, "seq" | "eligible" | "version">): Waiter<G> {
		const waiter: Waiter<G> = { ...w, seq: ++this.seq, eligible: null, version: -1 };
		this.waiters.set(waiter.seq, waiter);
		this.hivesOf(waiter);
		return waiter;
	}

	has(w: Waiter<G>): boolean {
		return this.waiters.get(w.seq) === w;
	}

	/** False when it had left already. */
	remove(w: Waiter<G>): boolean {
		if (!this.waiters.delete(w.seq)) return false;
		if (w.eligible) this.count(w.eligible, -1);
		return true;
	}

	/** The hives a waiter could ever use, recomputed if the fleet changed since. */
	hivesOf(w: Waiter<G>): Set<string> {
		if (w.eligible && w.version === this.version) return w.eligible;
		if (w.eligible && this.waiters.has(w.seq)) this.count(w.eligible, -1);
		w.eligible = this.eligible(w.want);
		w.version = this.version;
		if (this.waiters.has(w.seq)) this.count(w.eligible, 1);
		return w.eligible;
	}

	/** The hives some waiter (other than `except`) could use: what a newer request must leave to them. */
	wantedBy(except?: Waiter<G>): HiveSet {
		if (this.refreshed !== this.version) {
			for (const w of this.waiters.values()) this.hivesOf(w);
			this.refreshed = this.version;
		}
		const own = except?.eligible;
		return { has: (h) => (this.wanted.get(h) ?? 0) - (own?.has(h) ? 1 : 0) > 0 };
	}

	private count(hives: Set<string>, d: 1 | -1): void {
		for (const h of hives) {
			const n = (this.wanted.get(h) ?? 0) + d;
			if (n > 0) this.wanted.set(h, n);
			else this.wanted.delete(h);
		}
	}
}
