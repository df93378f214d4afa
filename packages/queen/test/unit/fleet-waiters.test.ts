import { describe, expect, it } from "vitest";
import { FleetWaiters } from "../../src/placement/fleet-waiters.ts";
import type { SharedWaiters } from "../../src/store/store.ts";

// The fleet's line on PostgreSQL: a row of this queen that no waiter holds (its
// leave failed on a database timeout) held hives back from every other queen's
// placements for as long as the queen lived (the soak, seed 799844). The sweep
// removes such rows, never one a join in flight may be about to be told of.
describe("the fleet waiters' sweep", () => {
	function shared() {
		const rows = new Map<number, string>();
		let next = 0;
		let hold: (() => void) | null = null;
		const s: SharedWaiters & { rows: Map<number, string>; holdNextAdd(): void; release(): void } = {
			rows,
			holdNextAdd: () => {
				hold = () => {};
			},
			release: () => hold?.(),
			add: async (id) => {
				const seq = ++next;
				rows.set(seq, id);
				if (hold) await new Promise<void>((r) => (hold = r));
				return seq;
			},
			remove: async (seqs) => {
				for (const q of seqs) rows.delete(q);
			},
			others: async () => [],
			keepOnly: async (live, upTo) => {
				let n = 0;
				for (const q of [...rows.keys()])
					if (q <= upTo && !live.includes(q)) {
						rows.delete(q);
						n++;
					}
				return n;
			},
		};
		return s;
	}

	it("removes this queen's rows no waiter holds (a leave that failed), keeps the live ones", async () => {
		const db = shared();
		const f = new FleetWaiters(db, () => new Set());
		const a = await f.join("a", { count: 0 } as never);
		const b = await f.join("b", { count: 0 } as never);
		// a's leave failed: its row stayed.
		expect(await f.sweep([b])).toBe(1);
		expect([...db.rows.keys()]).toEqual([b]);
		expect(a).toBe(1);
	});

	it("sweeps nothing while a join is in flight, nor a row above the last seq a join returned", async () => {
		const db = shared();
		const f = new FleetWaiters(db, () => new Set());
		await f.join("a", { count: 0 } as never);
		db.holdNextAdd();
		const pending = f.join("b", { count: 0 } as never);
		await new Promise((r) => setTimeout(r, 10));
		// b's row exists and its seq is not known yet: a sweep now must not take it.
		expect(await f.sweep([])).toBe(0);
		expect(db.rows.size).toBe(2);
		db.release();
		const b = await pending;
		// A row a lost answer left above the last seq known (3, never returned) stays until a later join passes it.
		db.rows.set(3, "lost");
		expect(await f.sweep([b])).toBe(1);
		expect([...db.rows.keys()].sort()).toEqual([b, 3]);
	});
});
