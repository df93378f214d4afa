import { describe, expect, it } from "vitest";
import { type Budget, check } from "../gate.ts";

// The gate's rule on plain data: over (or, for "min", under) the budget past its tolerance fails, naming figure, budget, measure and floor.
describe("perf gate check", () => {
	const b = (o: Partial<Budget>): Budget => ({ figure: "a.ratio", section: "a", limit: "max", budget: 2, tolerance: 0.25, why: "w", floor: "a.floorMs", ...o });
	it("passes within the tolerance, fails past it with a line that says it all", () => {
		expect(check([b({})], { a: { ratio: 2.5, floorMs: 4 } })).toEqual([]);
		expect(check([b({})], { a: { ratio: 2.51, floorMs: 4 } }).map((x) => x.line)).toEqual([
			"a.ratio = 2.51, over its budget 2 (tolerance 25 %: at most 2.5); floor a.floorMs = 4",
		]);
	});
	it("a min budget fails below it; a figure not measured fails too", () => {
		expect(check([b({ limit: "min", budget: 20, tolerance: 0.5 })], { a: { ratio: 10 } })).toEqual([]);
		expect(check([b({ limit: "min", budget: 20, tolerance: 0.5 })], { a: { ratio: 9.9 } })[0]!.line).toMatch(
			/^a\.ratio = 9\.9, under its budget 20 .*at least 10/,
		);
		expect(check([b({})], { a: {} })[0]!.line).toBe("a.ratio: not measured (section a recorded no number there)");
	});
});
