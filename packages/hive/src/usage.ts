import type { GpuStatus, Limits, RunUsage, WorkerStats } from "@apiary/protocol";
import type { RawSample } from "./cgroup/driver.ts";

// What a run used, gathered tick by tick and summed up in its exit record
// (the queen's right-sizing reads nothing else). Cumulative counters come
// from the cgroup's last reading, so they cover the whole run even when a
// tick was missed; peaks, the p95 and GPU figures cover the ticks seen.

/**
 * Per-tick cores go into log-spaced buckets 2 % wide (VPA's histograms are
 * 5 %) from 0.001 cores up: a month-long run costs the same few KiB as a
 * minute-long one, and the p95 read back is within 2 % of the exact one.
 */
const FIRST = 0.001;
const RATIO = 1.02;
const BUCKETS = 720; // FIRST × 1.02^720 ≈ 1,560 cores
const LOG_RATIO = Math.log(RATIO);

function bucketOf(cores: number): number {
	if (cores <= FIRST) return 0;
	return Math.min(BUCKETS, Math.ceil(Math.log(cores / FIRST) / LOG_RATIO - 1e-9));
}

const upperEdge = (b: number) => FIRST * RATIO ** b;

interface GpuUse {
	peakMiB: number | null;
	utilSum: number;
	utilTicks: number;
}

export class UsageTracker {
	private ticks = 0;
	private readonly cores = new Uint32Array(BUCKETS + 1);
	private coreTicks = 0;
	private maxCores = 0;
	private peakWorkingSet: number | null = null;
	private lastUptimeMs: number | null = null;
	private readonly gpus = new Map<string, GpuUse>();
	/** The GPUs the worker was given, by index or uuid as the spawn named them. */
	private readonly held: Set<string>;

	constructor(held: readonly string[]) {
		this.held = new Set(held);
	}

	/** One tick's sample of the worker (and the host's GPUs, for utilisation). */
	add(stats: WorkerStats, raw: RawSample, gpu: GpuStatus | null): void {
		this.ticks++;
		this.lastUptimeMs = stats.uptimeMs;
		const pct = stats.cpu.percent;
		if (pct !== null) {
			const c = pct / 100;
			this.cores[bucketOf(c)]!++;
			this.coreTicks++;
			if (c > this.maxCores) this.maxCores = c;
		}
		// anon + shmem: what the worker holds that reclaim cannot drop. The
		// kubelet's working set (usage − inactive file) still counts active
		// page cache, which a test that writes files fills without needing it.
		if (raw.anonBytes !== null && raw.shmemBytes !== null) {
			const ws = raw.anonBytes + raw.shmemBytes;
			if (this.peakWorkingSet === null || ws > this.peakWorkingSet) this.peakWorkingSet = ws;
		}
		const mem = stats.gpuMemoryMiB ?? {};
		for (const g of gpu?.gpus ?? []) {
			const used = mem[g.uuid];
			if (used === undefined && !this.held.has(g.uuid) && !this.held.has(String(g.index))) continue;
			let u = this.gpus.get(g.uuid);
			if (!u) {
				u = { peakMiB: null, utilSum: 0, utilTicks: 0 };
				this.gpus.set(g.uuid, u);
			}
			if (used !== undefined && (u.peakMiB === null || used > u.peakMiB)) u.peakMiB = used;
			if (g.utilizationGpu !== null && !g.stale) {
				u.utilSum += g.utilizationGpu;
				u.utilTicks++;
			}
		}
	}

	/** The p95 of the per-tick cores (nearest rank, to the bucket's upper edge, never above the highest seen); null before two ticks gave a rate. */
	p95Cores(): number | null {
		if (this.coreTicks === 0) return null;
		const rank = Math.ceil(0.95 * this.coreTicks);
		let seen = 0;
		for (let b = 0; b <= BUCKETS; b++) {
			seen += this.cores[b]!;
			if (seen >= rank) return Math.min(upperEdge(b), this.maxCores);
		}
		return this.maxCores;
	}

	/**
	 * The run's usage from the cgroup's last reading (`final`), its limits and
	 * its duration (null when the end was not observed: the last tick's
	 * uptime stands in, as that is what the counters cover).
	 */
	result(final: RawSample | null, limits: Limits, durationMs: number | null): RunUsage {
		const ms = final === null ? null : (durationMs ?? this.lastUptimeMs);
		const seconds = final?.cpuUsageNs == null ? null : final.cpuUsageNs / 1e9;
		const avgCores = seconds === null || ms === null || ms <= 0 ? null : seconds / (ms / 1000);
		const periods = final?.periods ?? null;
		const throttled = final?.throttledPeriods ?? null;
		const psi = (line: { totalUs: number } | null | undefined) => (line == null || ms === null || ms <= 0 ? null : Math.min(100, line.totalUs / 10 / ms));
		const p = final?.pressure;
		return {
			ticks: this.ticks,
			cpu: {
				seconds,
				avgCores,
				p95Cores: this.p95Cores(),
				throttledFraction: periods === null || throttled === null || periods === 0 ? null : throttled / periods,
				limitCores: limits.cpu,
				efficiency: avgCores === null || limits.cpu === null ? null : avgCores / limits.cpu,
			},
			memory: {
				peakWorkingSetBytes: this.peakWorkingSet,
				kernelPeakBytes: final?.memoryPeak ?? null,
				limitBytes: limits.memoryBytes,
				efficiency: this.peakWorkingSet === null || limits.memoryBytes === null ? null : this.peakWorkingSet / limits.memoryBytes,
			},
			io: { readBytes: final?.readBytes ?? null, writeBytes: final?.writeBytes ?? null },
			pressure: {
				cpuSome: psi(p?.cpu?.some),
				memorySome: psi(p?.memory?.some),
				memoryFull: psi(p?.memory?.full),
				ioSome: psi(p?.io?.some),
				ioFull: psi(p?.io?.full),
			},
			gpus: [...this.gpus].map(([uuid, u]) => ({
				uuid,
				peakMemoryMiB: u.peakMiB,
				avgUtilization: u.utilTicks === 0 ? null : u.utilSum / u.utilTicks,
			})),
		};
	}
}
