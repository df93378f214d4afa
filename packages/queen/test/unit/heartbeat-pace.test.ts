import { describe, expect, it } from "vitest";
import { heartbeatPace, pacedLiveness } from "../../src/heartbeat-pace.ts";

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
});
