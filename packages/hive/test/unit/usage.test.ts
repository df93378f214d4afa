import type { GpuInfo, GpuStatus, WorkerStats } from "@apiary/protocol";
import { rawSample } from "@apiary/test-support/fake-driver";
import { describe, expect, it } from "vitest";
import { UsageTracker } from "../../src/usage.ts";

// The run's usage as the exit record gives it: cumulative figures from the
// cgroup's last reading, peaks and the p95 from the ticks.
const stats = (o: { percent?: number | null; uptimeMs?: number; gpuMemoryMiB?: Record<string, number> | null }): WorkerStats => ({
	sampledAt: 0,
	uptimeMs: o.uptimeMs ?? 1000,
	cpu: { usageNs: null, percent: o.percent ?? null, periods: null, throttledPeriods: null, throttledNs: null },
	memory: { currentBytes: null, peakBytes: null, workingSetBytes: null, anonBytes: null, fileBytes: null, limitBytes: null, oomKills: null },
	io: {
		readBytes: null,
		writeBytes: null,
		readOps: null,
		writeOps: null,
		readBytesPerSec: null,
		writeBytesPerSec: null,
		readOpsPerSec: null,
		writeOpsPerSec: null,
	},
	pids: { current: null, limit: null },
	pressure: { cpu: null, memory: null, io: null },
	gpuMemoryMiB: o.gpuMemoryMiB ?? null,
});
const gpu = (index: number, uuid: string, utilizationGpu: number | null): GpuInfo => ({
	index,
	uuid,
	name: "NVIDIA A100-SXM4-80GB",
	busId: null,
	memoryTotalMiB: 81920,
	memoryUsedMiB: 0,
	memoryFreeMiB: 81920,
	utilizationGpu,
	utilizationMemory: null,
	temperatureC: null,
	powerDrawW: null,
	powerLimitW: null,
	migMode: null,
	processes: [],
	ageMs: 0,
	stale: false,
});
const gpus = (...g: GpuInfo[]): GpuStatus => ({ state: "ok", message: null, ageMs: 0, gpus: g });
const psi = (totalUs: number) => ({ some: { avg10: 0, avg60: 0, avg300: 0, totalUs }, full: { avg10: 0, avg60: 0, avg300: 0, totalUs: totalUs / 2 } });
const limits = { cpu: 0.5, memoryBytes: 1000, pids: null, timeoutMs: null };

describe("a run's usage", () => {
	it("p95 of the per-tick cores is within the 2 % buckets of the exact one, never above the highest tick", () => {
		const t = new UsageTracker([]);
		// 1..100 hundredths of a core, shuffled: the exact nearest-rank p95 is 0.95.
		const values = Array.from({ length: 100 }, (_, i) => i + 1).sort((a, b) => ((a * 37) % 101) - ((b * 37) % 101));
		for (const v of values) t.add(stats({ percent: v }), rawSample(), null);
		const p95 = t.p95Cores()!;
		expect(p95).toBeGreaterThanOrEqual(0.95);
		expect(p95).toBeLessThanOrEqual(0.95 * 1.02);
		const one = new UsageTracker([]);
		one.add(stats({ percent: 37 }), rawSample(), null);
		expect(one.p95Cores()).toBe(0.37);
	});

	it("no rate yet (one tick): p95 is null, not 0", () => {
		const t = new UsageTracker([]);
		t.add(stats({ percent: null }), rawSample(), null);
		expect(t.p95Cores()).toBeNull();
		expect(t.result(null, limits, 1000).cpu.p95Cores).toBeNull();
	});

	it("CPU seconds, average cores, throttled fraction and seff's efficiencies from the last reading and the limits", () => {
		const t = new UsageTracker([]);
		t.add(stats({ percent: 50 }), rawSample({ anonBytes: 300, shmemBytes: 100 }), null);
		t.add(stats({ percent: 40 }), rawSample({ anonBytes: 200, shmemBytes: 0 }), null);
		const final = rawSample({
			cpuUsageNs: 4e9,
			periods: 100,
			throttledPeriods: 25,
			memoryPeak: 900,
			readBytes: 10,
			writeBytes: 20,
			pressure: { cpu: psi(2_000_000), memory: null, io: psi(0) },
		});
		const u = t.result(final, limits, 10_000);
		expect(u.ticks).toBe(2);
		expect(u.cpu).toEqual({ seconds: 4, avgCores: 0.4, p95Cores: 0.5, throttledFraction: 0.25, limitCores: 0.5, efficiency: 0.8 });
		// anon + shmem, the highest tick: 400; the kernel's peak beside it.
		expect(u.memory).toEqual({ peakWorkingSetBytes: 400, kernelPeakBytes: 900, limitBytes: 1000, efficiency: 0.4 });
		expect(u.io).toEqual({ readBytes: 10, writeBytes: 20 });
		// 2 s of CPU stall over a 10 s run: 20 %; memory PSI not measured: null.
		expect(u.pressure).toEqual({ cpuSome: 20, memorySome: null, memoryFull: null, ioSome: 0, ioFull: 0 });
	});

	it("without limits the efficiencies are null, without a CPU quota (no periods) the throttled fraction is null, without shmem no working set", () => {
		const t = new UsageTracker([]);
		t.add(stats({ percent: 10 }), rawSample({ anonBytes: 300, shmemBytes: null }), null);
		const u = t.result(rawSample({ cpuUsageNs: 1e9, periods: 0, throttledPeriods: 0 }), { cpu: null, memoryBytes: null, pids: null, timeoutMs: null }, 2000);
		expect(u.cpu.efficiency).toBeNull();
		expect(u.cpu.throttledFraction).toBeNull();
		expect(u.memory.peakWorkingSetBytes).toBeNull();
		expect(u.memory.efficiency).toBeNull();
		expect(u.cpu.avgCores).toBe(0.5);
	});

	it("an unobserved end (duration null) averages over the last tick's uptime; no final reading leaves the cumulative figures null", () => {
		const t = new UsageTracker([]);
		t.add(stats({ percent: 10, uptimeMs: 4000 }), rawSample(), null);
		expect(t.result(rawSample({ cpuUsageNs: 2e9 }), limits, null).cpu.avgCores).toBe(0.5);
		const none = t.result(null, limits, 5000);
		expect(none.cpu.seconds).toBeNull();
		expect(none.cpu.avgCores).toBeNull();
		expect(none.io).toEqual({ readBytes: null, writeBytes: null });
	});

	it("GPUs: peak memory of the worker's processes and mean utilisation of the GPUs it held (by index or uuid), not of others", () => {
		const t = new UsageTracker(["0"]);
		const a = "GPU-aaaa";
		const b = "GPU-bbbb";
		const c = "GPU-cccc";
		t.add(stats({ gpuMemoryMiB: { [a]: 1000, [b]: 10 } }), rawSample(), gpus(gpu(0, a, 80), gpu(1, b, 20), gpu(2, c, 99)));
		t.add(stats({ gpuMemoryMiB: { [a]: 3000 } }), rawSample(), gpus(gpu(0, a, 60), gpu(1, b, null), gpu(2, c, 99)));
		const u = t.result(rawSample(), limits, 2000);
		expect(u.gpus).toEqual([
			{ uuid: a, peakMemoryMiB: 3000, avgUtilization: 70 },
			{ uuid: b, peakMemoryMiB: 10, avgUtilization: 20 },
		]);
	});
});
