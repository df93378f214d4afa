import type { GpuView } from "@apiary/protocol";
import { gpu } from "@apiary/test-support/fake-hive";
import { describe, expect, it } from "vitest";
import { byBestFit, isGpuFree, pickGpus } from "../../src/gpu-pick.ts";
import { livenessTransition } from "../../src/liveness.ts";

const rules = { staleAfterMs: 3000, evictAfterMs: 90_000 };
const view = (hiveId: string, index: number, freeMiB: number): GpuView => ({
	...gpu(index, { memoryFreeMiB: freeMiB }),
	hiveId,
	free: true,
	heldBy: [],
	claimId: null,
});

describe("liveness transitions (pure)", () => {
	it("ready stays ready up to the stale mark, then stale, then lost past the evict mark", () => {
		expect(livenessTransition("ready", 3000, rules)).toBeNull();
		expect(livenessTransition("ready", 3001, rules)).toBe("stale");
		expect(livenessTransition("stale", 89_999, rules)).toBeNull();
		expect(livenessTransition("stale", 90_001, rules)).toBe("lost");
	});
	it("an unknown hive (queen restarted) is never called stale, only lost once the evict mark passes", () => {
		expect(livenessTransition("unknown", 50_000, rules)).toBeNull();
		expect(livenessTransition("unknown", 90_001, rules)).toBe("lost");
	});
	it("lost and left are final", () => {
		expect(livenessTransition("lost", 1e9, rules)).toBeNull();
		expect(livenessTransition("left", 1e9, rules)).toBeNull();
	});
});

describe("GPU picking (pure)", () => {
	it("a GPU is free only on a ready hive, fresh, unheld, unclaimed and under the busy mark", () => {
		const g = gpu(0, { memoryUsedMiB: 10 });
		const o = { hiveState: "ready" as const, heldBy: 0, claimed: false, busyMemoryMiB: 1024 };
		expect(isGpuFree(g, o)).toBe(true);
		expect(isGpuFree(g, { ...o, hiveState: "stale" })).toBe(false);
		expect(isGpuFree({ ...g, stale: true }, o)).toBe(false);
		expect(isGpuFree(g, { ...o, heldBy: 1 })).toBe(false);
		expect(isGpuFree(g, { ...o, claimed: true })).toBe(false);
		expect(isGpuFree({ ...g, memoryUsedMiB: 1024 }, o)).toBe(false);
		expect(isGpuFree({ ...g, memoryUsedMiB: null }, o)).toBe(true);
	});
	it("sorts best fit: least free memory first, then hive, then index", () => {
		const sorted = [view("b", 1, 40_000), view("a", 2, 80_000), view("a", 0, 40_000)].sort(byBestFit);
		expect(sorted.map((g) => `${g.hiveId}/${g.index}`)).toEqual(["a/0", "b/1", "a/2"]);
	});
	it("same-hive picks come from the hive with the fewest free GPUs that still fits", () => {
		const free = [view("big", 0, 80_000), view("big", 1, 80_000), view("big", 2, 80_000), view("small", 0, 80_000), view("small", 1, 80_000)];
		const r = pickGpus(free, { count: 2, sameHive: true });
		expect("gpus" in r && r.gpus.map((g) => g.hiveId)).toEqual(["small", "small"]);
		const three = pickGpus(free, { count: 3, sameHive: true });
		expect("gpus" in three && three.gpus.map((g) => g.hiveId)).toEqual(["big", "big", "big"]);
	});
	it("says why nothing fits", () => {
		expect(pickGpus([view("a", 0, 1)], { count: 2, minMemoryMiB: 40960 })).toEqual({ error: "not enough free GPUs: wanted 2 with ≥ 40960 MiB free, 1 free" });
		expect(pickGpus([view("a", 0, 1), view("b", 0, 1)], { count: 2, sameHive: true })).toEqual({
			error: "not enough free GPUs: wanted 2 on one hive, no hive has that many",
		});
	});
});
