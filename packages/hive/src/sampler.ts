import type { IoStats, WorkerStats } from "@apiary/protocol";
import type { RawSample } from "./cgroup/driver.ts";

export interface TimedSample {
	raw: RawSample;
	/** Monotonic clock, ms. */
	at: number;
}

const delta = (cur: number | null, prev: number | null | undefined) => (cur === null || prev == null ? null : cur - prev);

function rate(cur: number | null, prev: number | null | undefined, seconds: number): number | null {
	const d = delta(cur, prev);
	// A counter that went backwards was reset (e.g. a re-created cgroup): no rate.
	return d === null || d < 0 || seconds <= 0 ? null : d / seconds;
}

/**
 * One worker's stats from this tick's counters and the previous tick's. Rates
 * and CPU percent need two samples on the monotonic clock, so the first is null.
 */
export function computeStats(cur: TimedSample, prev: TimedSample | null, wallNow: number, uptimeMs: number): WorkerStats {
	const r = cur.raw;
	const p = prev?.raw;
	const seconds = prev ? (cur.at - prev.at) / 1000 : 0;
	const cpuDelta = delta(r.cpuUsageNs, p?.cpuUsageNs);
	const percent = prev && cpuDelta !== null && cpuDelta >= 0 && seconds > 0 ? (cpuDelta / (seconds * 1e9)) * 100 : null;
	const io: IoStats = {
		readBytes: r.readBytes,
		writeBytes: r.writeBytes,
		readOps: r.readOps,
		writeOps: r.writeOps,
		readBytesPerSec: rate(r.readBytes, p?.readBytes, seconds),
		writeBytesPerSec: rate(r.writeBytes, p?.writeBytes, seconds),
		readOpsPerSec: rate(r.readOps, p?.readOps, seconds),
		writeOpsPerSec: rate(r.writeOps, p?.writeOps, seconds),
	};
	return {
		sampledAt: wallNow,
		uptimeMs,
		cpu: {
			usageNs: r.cpuUsageNs,
			percent: percent === null ? null : Math.round(percent * 100) / 100,
			periods: r.periods,
			throttledPeriods: r.throttledPeriods,
			throttledNs: r.throttledNs,
		},
		memory: {
			currentBytes: r.memoryCurrent,
			peakBytes: r.memoryPeak,
			workingSetBytes: r.memoryCurrent === null || r.inactiveFileBytes === null ? null : Math.max(0, r.memoryCurrent - r.inactiveFileBytes),
			anonBytes: r.anonBytes,
			fileBytes: r.fileBytes,
			limitBytes: r.memoryLimit,
			oomKills: r.oomKills,
		},
		io,
		pids: { current: r.pidsCurrent, limit: r.pidsLimit },
		pressure: r.pressure,
		gpuMemoryMiB: null,
	};
}
