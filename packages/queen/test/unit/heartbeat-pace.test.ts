import { describe, expect, it } from "vitest";
import { heartbeatPace, PaceGovernor, pacedLiveness } from "../../src/heartbeat-pace.ts";

describe("adaptive heartbeats", () => {
	it("hives send at their own tick while they fit under the target; past it every hives/target s, in 250 ms steps", () => {
		expect(heartbeatPace(0, 1000)).toBe(0);
		expect(heartbeatPace(1000, 1000)).toBe(0);
		expect(heartbeatPace(1001, 1000)).toBe(1250);
		expect(heartbeatPace(3000, 1000)).toBe(3000);
		expect(heartbeatPace(10_000, 1000)).toBe(10_000);
		expect(heartbeatPace(3, 2)).toBe(1500);
		// Whatever the fleet, the intake stays at or under the target.
		for (const hives of [1, 7, 999, 1001, 4000, 12_345]) {
			const pace = heartbeatPace(hives, 1000);
			expect(pace === 0 ? hives : (hives * 1000) / pace).toBeLessThanOrEqual(1000);
		}
		expect(heartbeatPace(5000, 0)).toBe(0); // no target: no pacing
	});

	it("a slowed hive is stale only after three of its intervals, lost after as many stale-afters as before", () => {
		const r = { staleAfterMs: 3000, evictAfterMs: 90_000 };
		expect(pacedLiveness(r, 0)).toBe(r);
		expect(pacedLiveness(r, 1000)).toBe(r);
		expect(pacedLiveness(r, 4000)).toEqual({ staleAfterMs: 12_000, evictAfterMs: 360_000 });
		expect(pacedLiveness({ staleAfterMs: 1000, evictAfterMs: 10_000 }, 1500)).toEqual({ staleAfterMs: 4500, evictAfterMs: 45_000 });
	});

	it("the governor cuts the target to the intake that would keep the loop at 60 % busy, never compounding a cut the hives have not heard yet, and raises it when idle by a quarter a period, or up to double where what a heartbeat costs leaves room for twice that", () => {
		const g = new PaceGovernor({ max: 1000 });
		expect(g.target).toBe(1000);
		// Loop 100 % busy, 1000 heartbeats/s making up most of it: 600/s would have left it at 60 %.
		expect(g.observe(1, 1000, 0.9)).toBe(600);
		// The hives have not heard yet (still 1000/s): the cut is not cut again.
		expect(g.observe(1, 1000, 0.9)).toBe(600);
		// They slowed to 600/s and the loop is still 90 % busy: 400/s.
		expect(g.observe(0.9, 600, 0.8)).toBe(400);
		// Never more than halved at once, never under the floor (max ÷ 20).
		expect(g.observe(1, 100, 0.9)).toBe(200);
		for (let i = 0; i < 10; i++) g.observe(1, 10, 0.9);
		expect(g.target).toBe(50);
		// Between low and high: held.
		expect(g.observe(0.6, 50, 0.5)).toBe(50);
		// Under 50 % busy: up by a quarter a period where what a heartbeat costs leaves no room for twice more:
		// 50/s are 45 % of the loop (9 ms each), the rest 4 %: 60 % would be 62.2/s, so a quarter, 62.5.
		expect(g.observe(0.49, 50, 0.45)).toBe(62.5);
		// 62.5/s at 15 % (2.4 ms each), the rest 10 %: room for 208/s at 60 %, half of it taken: 104.
		expect(g.observe(0.25, 62.5, 0.15)).toBeCloseTo(104.17, 2);
		// Room for far more (0.5 ms each, the rest 5 %): doubled a period, to the most and no further.
		expect(g.observe(0.1, 100, 0.05)).toBeCloseTo(208.33, 2);
		for (const t of [416.67, 833.33, 1000, 1000]) expect(g.observe(0.1, g.target, 0.05)).toBeCloseTo(t, 2);
		// No heartbeats taken (nothing to reckon a cost by): a quarter.
		const idle = new PaceGovernor({ max: 1000 });
		idle.observe(1, 1000, 0.9);
		expect(idle.observe(0.1, 0, 0)).toBe(750);
	});

	it("the governor does not cut heartbeats that are not what keeps the loop busy (a burst of joins, a flood of queries), nor with no heartbeats at all", () => {
		const g = new PaceGovernor({ max: 2 });
		expect(g.observe(0.95, 2, 0.01)).toBe(2);
		expect(g.observe(1, 0, 0)).toBe(2);
		const big = new PaceGovernor({ max: 1000, floor: 200 });
		expect(big.observe(1, 1000, 0.2)).toBe(1000);
		expect(big.observe(1, 1000, 0.3)).toBe(600);
		expect(big.observe(1, 100, 0.5)).toBe(300);
		expect(big.observe(1, 100, 0.5)).toBe(200);
	});

	it("the governor cuts when heartbeats wait in the intake past a second, however busy the loop looks, and does not raise the target meanwhile", () => {
		const g = new PaceGovernor({ max: 1000 });
		// Behind, but heartbeats a sliver of the work (a join storm of hellos and first heartbeats): not cut.
		expect(g.observe(0.9, 1000, 0.1, 5000)).toBe(1000);
		// Behind with paced heartbeats most of what waits (the loop busy with something else): cut all the same.
		expect(new PaceGovernor({ max: 1000 }).observe(0.9, 1000, 0.1, 5000, 0.9)).toBeLessThan(1000);
		// 40 % busy (the loop yields between slices) but the oldest heartbeat waited 1.5 s: 1000/s is too many.
		expect(g.observe(0.4, 1000, 0.3, 1500)).toBe(800);
		// Idle but still behind: held, not raised.
		expect(g.observe(0.2, 800, 0.1, 1200)).toBe(640);
		expect(g.observe(0.2, 0, 0, 1200)).toBe(640);
		// Caught up: raised again (a quarter: 640/s at 45 % of the loop, the rest 4 %, leave room for 796/s at 60 %, half of it less).
		expect(g.observe(0.49, 640, 0.45, 10)).toBe(800);
	});
});
