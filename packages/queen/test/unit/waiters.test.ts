import { describe, expect, it } from "vitest";
import type { Want } from "../../src/placement/choose.ts";
import { WaitQueue } from "../../src/placement/waiters.ts";

// The wait queue's costs, counted: how often it asks which hives could serve
// a waiter (O(fleet) each) as waiters come, go and the fleet changes. A probe
// found 3,000 waiters cost 16.7 s of queen CPU to add: every addition
// re-derived every earlier waiter's hives.

/** A fleet of `hives` hives, h<i> labelled pool=p<i % pools>; counts the O(fleet) derivations. */
function fleet(hives: number, pools: number) {
	let derivations = 0;
	const eligible = (want: Want) => {
		derivations++;
		const out = new Set<string>();
		for (let i = 0; i < hives; i++) if (!want.constraints || want.constraints.pool === `p${i % pools}`) out.add(`h${i}`);
		return out;
	};
	return { eligible, derived: () => derivations };
}

const want = (pool: string): Want => ({ constraints: { pool }, cpu: null, memoryBytes: null });
const waiter = (id: string, pool: string) => ({ id, want: want(pool), since: 0, deadline: 1e12, resolve: () => {} });

describe("the wait queue", () => {
	it("adding 5,000 waiters derives each one's hives once, and what a newcomer must leave to them is a lookup", () => {
		const f = fleet(100, 10);
		const q = new WaitQueue(f.eligible);
		for (let i = 0; i < 5000; i++) {
			q.add(waiter(`w${i}`, i < 4000 ? `none-${i}` : "p3"));
			// What every placement asks: which hives the waiters hold. No re-derivation.
			q.wantedBy();
		}
		expect(f.derived()).toBe(5000);
		const held = q.wantedBy();
		for (let i = 0; i < 100; i++) expect(held.has(`h${i}`), `h${i}`).toBe(i % 10 === 3);
		expect(q.size).toBe(5000);
	});

	it("a change of the fleet re-derives each waiter once, lazily; leaving and coming keep the counts exact", () => {
		const f = fleet(20, 4);
		const q = new WaitQueue(f.eligible);
		const a = q.add(waiter("a", "p1"));
		const b = q.add(waiter("b", "p1"));
		const c = q.add(waiter("c", "p2"));
		expect(f.derived()).toBe(3);
		q.fleetChanged();
		q.fleetChanged();
		expect(f.derived()).toBe(3); // nothing until asked
		q.wantedBy();
		q.wantedBy();
		expect(f.derived()).toBe(6);
		// A newcomer leaves what others hold, not what it holds itself.
		expect(q.wantedBy(c).has("h2")).toBe(false);
		expect(q.wantedBy(c).has("h1")).toBe(true);
		expect(q.remove(a)).toBe(true);
		expect(q.remove(a)).toBe(false);
		expect(q.wantedBy().has("h1")).toBe(true); // b still waits for p1
		q.remove(b);
		expect(q.wantedBy().has("h1")).toBe(false);
		expect(q.wantedBy().has("h2")).toBe(true);
		expect([...q.values()].map((w) => w.id)).toEqual(["c"]);
	});
});
