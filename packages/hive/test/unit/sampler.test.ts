import { describe, expect, it } from "vitest";
import type { RawSample } from "../../src/cgroup/driver.ts";
import { computeStats } from "../../src/sampler.ts";

const raw = (o: Partial<RawSample>): RawSample => ({
	cpuUsageNs: 0,
	periods: null,
	throttledPeriods: null,
	throttledNs: null,
	memoryCurrent: 100,
	memoryPeak: null,
	anonBytes: null,
	fileBytes: null,
	inactiveFileBytes: 30,
	shmemBytes: null,
	memoryLimit: null,
	oomKills: null,
	readBytes: 0,
	writeBytes: 0,
	readOps: 0,
	writeOps: 0,
	pidsCurrent: 1,
	pidsLimit: null,
	pressure: { cpu: null, memory: null, io: null },
	...o,
});

describe("per-tick stats from counters", () => {
	it("the first sample has no rates: null, not 0", () => {
		const s = computeStats({ raw: raw({ cpuUsageNs: 5e9 }), at: 1000 }, null, 0, 0);
		expect(s.cpu.percent).toBeNull();
		expect(s.io.writeBytesPerSec).toBeNull();
		expect(s.io.readOpsPerSec).toBeNull();
		expect(s.cpu.usageNs).toBe(5e9);
	});

	it("CPU percent is usage delta over the monotonic interval, of one core", () => {
		const prev = { raw: raw({ cpuUsageNs: 1e9 }), at: 10_000 };
		const cur = { raw: raw({ cpuUsageNs: 1e9 + 1.5e9 }), at: 12_000 };
		expect(computeStats(cur, prev, 0, 0).cpu.percent).toBe(75);
		// two busy cores
		expect(computeStats({ raw: raw({ cpuUsageNs: 1e9 + 4e9 }), at: 12_000 }, prev, 0, 0).cpu.percent).toBe(200);
	});

	it("IO rates are per second from deltas", () => {
		const prev = { raw: raw({ writeBytes: 0, writeOps: 0, readBytes: 100 }), at: 0 };
		const cur = { raw: raw({ writeBytes: 20 * 1048576, writeOps: 40, readBytes: 100 }), at: 4000 };
		const s = computeStats(cur, prev, 0, 0);
		expect(s.io.writeBytesPerSec).toBe(5 * 1048576);
		expect(s.io.writeOpsPerSec).toBe(10);
		expect(s.io.readBytesPerSec).toBe(0);
	});

	it("a counter that went backwards (reset) gives no rate rather than a negative one", () => {
		const s = computeStats({ raw: raw({ writeBytes: 10, cpuUsageNs: 1 }), at: 2000 }, { raw: raw({ writeBytes: 500, cpuUsageNs: 5e9 }), at: 1000 }, 0, 0);
		expect(s.io.writeBytesPerSec).toBeNull();
		expect(s.cpu.percent).toBeNull();
	});

	it("unmeasured counters stay null through rates", () => {
		const s = computeStats({ raw: raw({ readBytes: null, cpuUsageNs: null }), at: 2000 }, { raw: raw({ readBytes: null, cpuUsageNs: null }), at: 1000 }, 0, 0);
		expect(s.io.readBytesPerSec).toBeNull();
		expect(s.cpu.percent).toBeNull();
	});

	it("working set is current minus inactive file, never negative", () => {
		expect(computeStats({ raw: raw({ memoryCurrent: 100, inactiveFileBytes: 30 }), at: 0 }, null, 0, 0).memory.workingSetBytes).toBe(70);
		expect(computeStats({ raw: raw({ memoryCurrent: 10, inactiveFileBytes: 30 }), at: 0 }, null, 0, 0).memory.workingSetBytes).toBe(0);
		expect(computeStats({ raw: raw({ inactiveFileBytes: null }), at: 0 }, null, 0, 0).memory.workingSetBytes).toBeNull();
	});
});
