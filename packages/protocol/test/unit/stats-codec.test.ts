import { describe, expect, it } from "vitest";
import { PACKED_STATS_LENGTH, packStats, ProtocolError, unpackStats, type WorkerStats } from "../../src/index.ts";

const stats: WorkerStats = {
	sampledAt: 1_795_275_716_675,
	uptimeMs: 3100,
	cpu: { usageNs: 1_500_000_000, percent: 49.8, periods: 30, throttledPeriods: 29, throttledNs: 1_460_000_000 },
	memory: {
		currentBytes: 67_108_864,
		peakBytes: 67_108_864,
		workingSetBytes: 60_000_000,
		anonBytes: 50_000_000,
		fileBytes: 4096,
		limitBytes: null,
		oomKills: 1,
	},
	io: {
		readBytes: 0,
		writeBytes: 20_971_520,
		readOps: 0,
		writeOps: 20,
		readBytesPerSec: 0,
		writeBytesPerSec: 6_990_506,
		readOpsPerSec: 0,
		writeOpsPerSec: 6.67,
	},
	pids: { current: 3, limit: 20 },
	pressure: {
		cpu: { some: { avg10: 1.5, avg60: 0.2, avg300: 0.05, totalUs: 123 }, full: null },
		memory: null,
		io: { some: { avg10: 0, avg60: 0, avg300: 0, totalUs: 9 }, full: { avg10: 0, avg60: 0, avg300: 0, totalUs: 4 } },
	},
	gpuMemoryMiB: { "GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000": 1536 },
};

describe("packed stats on the heartbeat", () => {
	it("round-trip every field, nulls included", () => {
		const packed = packStats(stats);
		expect(packed).toHaveLength(PACKED_STATS_LENGTH);
		expect(unpackStats(JSON.parse(JSON.stringify(packed)))).toEqual(stats);
	});
	it("are much smaller than the objects", () => {
		expect(JSON.stringify(packStats(stats)).length * 2.5).toBeLessThan(JSON.stringify(stats).length);
	});
	it("reject what is not a packed array", () => {
		expect(() => unpackStats([1, 2] as never)).toThrow(/array of 28/);
	});
	it("reject a position of the wrong type, naming it", () => {
		const bad = packStats(stats);
		bad[5] = "lots" as never;
		expect(() => unpackStats(bad)).toThrow(new ProtocolError("packed stats position 5 must be a number or null"));
		const psi = packStats(stats);
		psi[24] = [1, 2] as never;
		expect(() => unpackStats(psi)).toThrow(/position 24 must be 8 numbers or null/);
		const gpu = packStats(stats);
		gpu[27] = { "GPU-x": "big" } as never;
		expect(() => unpackStats(gpu)).toThrow(/position 27/);
	});
});
