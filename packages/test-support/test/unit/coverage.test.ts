import { describe, expect, it } from "vitest";
import { belowFloors } from "../../../../scripts/coverage.ts";

// npm run coverage's floors (coverage-floors.json): a package below any of
// its three floors fails the run, each shortfall named; one not measured at all counts as 0.
describe("coverage floors", () => {
	const s = (lines: number, branches: number, functions: number) => ({ lines: { pct: lines }, branches: { pct: branches }, functions: { pct: functions } });
	const floors = { hive: { lines: 89, branches: 71, functions: 76 }, queen: { lines: 86, branches: 65, functions: 72 } };
	it("at or above every floor passes", () => {
		expect(belowFloors({ hive: s(91.4, 73.4, 78.6), queen: s(86, 65, 72) }, floors)).toEqual([]);
	});
	it("below one fails naming the package, the figure and the floor; a package not measured fails on all three", () => {
		expect(belowFloors({ hive: s(91.4, 70.9, 78.6) }, floors)).toEqual([
			"packages/hive: branches 70.9 %, below its floor 71 %",
			"packages/queen: lines 0.0 %, below its floor 86 %",
			"packages/queen: branches 0.0 %, below its floor 65 %",
			"packages/queen: functions 0.0 %, below its floor 72 %",
		]);
	});
});
