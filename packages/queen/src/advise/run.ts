import type { ExitReason, ExitRecord, Limits } from "@apiary/protocol";

/**
 * One run as right-sizing keeps it: what it was given and what it used,
 * taken from its exit record (the hive sums a run up there; the queen
 * keeps no samples). Stored as JSON in the runs table.
 */
export interface RunSummary {
	/** Wall ms the run ended (or was found gone). */
	endedAt: number;
	durationMs: number | null;
	reason: ExitReason;
	oomKilled: boolean;
	profile: string | null;
	labels: Record<string, string>;
	limits: Pick<Limits, "cpu" | "memoryBytes" | "timeoutMs">;
	/** Peak working set: anon + shmem, else the kubelet's (usage − inactive file); never the kernel's page-cache-laden peak. */
	memoryBytes: number | null;
	avgCores: number | null;
	p95Cores: number | null;
	throttledFraction: number | null;
	/** PSI cpu "some" over the run, percent. */
	cpuPressure: number | null;
	/** The highest GPU memory the run used on any one of its GPUs, MiB. */
	gpuPeakMiB: number | null;
}

/** The summary of a run from its worker's spec and exit record; null for a run that never ran (spawn-failed). */
export function summarize(w: { profile: string | null; labels: Record<string, string>; limits: Limits }, exit: ExitRecord): RunSummary | null {
	if (exit.reason === "spawn-failed") return null;
	const u = exit.usage ?? null;
	const ended = Date.parse(exit.endedAt ?? exit.endedBefore ?? exit.startedAt);
	const gpuPeaks = (u?.gpus ?? []).map((g) => g.peakMemoryMiB).filter((m): m is number => m !== null);
	return {
		endedAt: Number.isNaN(ended) ? 0 : ended,
		durationMs: exit.durationMs,
		reason: exit.reason,
		oomKilled: exit.oomKilled === true || exit.reason === "oom",
		profile: w.profile,
		labels: w.labels,
		limits: { cpu: w.limits.cpu, memoryBytes: w.limits.memoryBytes, timeoutMs: w.limits.timeoutMs },
		memoryBytes: u?.memory.peakWorkingSetBytes ?? exit.peakWorkingSetBytes ?? null,
		avgCores: u?.cpu.avgCores ?? null,
		p95Cores: u?.cpu.p95Cores ?? null,
		throttledFraction: u?.cpu.throttledFraction ?? null,
		cpuPressure: u?.pressure.cpuSome ?? null,
		gpuPeakMiB: gpuPeaks.length === 0 ? null : Math.max(...gpuPeaks),
	};
}
