import { checkPackedStats, type PackedStats, packStats, unpackStats } from "@apiary/protocol";
import { stats } from "@apiary/test-support/fake-hive";
import { describe, expect, it } from "vitest";
import { LatestSample } from "../../src/latest-sample.ts";

// A worker's latest sample is kept as unboxed doubles (null as NaN) and
// overwritten in place: what it gives back must be exactly what came in.

/** A packed sample as a hive sends it, from a seeded generator: any position may be null. */
function randomSample(seed: number): PackedStats {
	let x = seed;
	const rnd = () => {
		x = (x * 1103515245 + 12345) % 2 ** 31;
		return x / 2 ** 31;
	};
	const num = () => (rnd() < 0.15 ? null : rnd() < 0.5 ? Math.floor(rnd() * 2 ** 53) : Math.round(rnd() * 10_000) / 100);
	const out: unknown[] = Array.from({ length: 24 }, num);
	out[0] = 1_800_000_000_000 + seed;
	for (let p = 0; p < 3; p++) out.push(rnd() < 0.3 ? null : Array.from({ length: 8 }, num));
	out.push(rnd() < 0.5 ? null : { "GPU-0": Math.floor(rnd() * 80_000), "GPU-1": 0 });
	return checkPackedStats(out);
}

describe("a worker's latest sample", () => {
	it("gives back exactly the packed sample it was given, nulls, pressure and GPU memory included (500 random samples)", () => {
		for (let seed = 1; seed <= 500; seed++) {
			const a = randomSample(seed);
			const kept = new LatestSample(a);
			expect(kept.packed()).toEqual(a);
			expect(kept.sampledAt).toBe(a[0]);
		}
	});

	it("is overwritten in place: the next sample replaces every position, a pressure that became null included", () => {
		const kept = new LatestSample(randomSample(7));
		for (let seed = 8; seed < 60; seed++) {
			const next = randomSample(seed);
			kept.set(next);
			expect(kept.packed()).toEqual(next);
		}
		const full = packStats({
			...stats(1_800_000_000_000),
			pressure: { cpu: { some: { avg10: 1, avg60: 2, avg300: 3, totalUs: 4 }, full: null }, memory: null, io: null },
		});
		kept.set(full);
		expect(unpackStats(kept.packed()).pressure.cpu).toEqual({ some: { avg10: 1, avg60: 2, avg300: 3, totalUs: 4 }, full: null });
		kept.set(packStats(stats(1_800_000_000_001)));
		expect(unpackStats(kept.packed()).pressure.cpu).toBeNull();
		expect(unpackStats(kept.packed())).toEqual(unpackStats(packStats(stats(1_800_000_000_001))));
	});
});
