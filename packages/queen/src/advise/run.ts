import { type ExitReason, type ExitRecord, type Limits, MAX_MEMORY_BYTES, MAX_TIMEOUT_MS } from "@apiary/protocol";

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

/** What a run's figures cannot exceed on its hive (from the hive's own facts; null: unknown, the absolute caps apply). */
export interface RunBounds {
	memoryBytes: number | null;
	cores: number | null;
}

const DAY_MS = 24 * 3_600_000;
/** A run longer than a year is no run this fleet had; a timeout is at most 30 days. */
const MAX_RUN_MS = 366 * DAY_MS;
const MAX_CORES = 4096;
const MAX_GPU_MIB = 16_777_216;

/**
 * Nulls every figure of a run that is not a finite number within physical
 * bounds (a hive's exit record is its word: 1e200 bytes, −5 ms, NaN), and
 * returns the fields it dropped. Recommendations then never see them, so one
 * hive's bad numbers cannot break another group's, nor survive a restart.
 */
export function sanitize(run: RunSummary, b: RunBounds = { memoryBytes: null, cores: null }): string[] {
	const dropped: string[] = [];
	const within = (v: number | null, min: number, max: number) => v === null || (typeof v === "number" && Number.isFinite(v) && v >= min && v <= max);
	const check = <K extends keyof RunSummary>(obj: RunSummary, k: K, min: number, max: number, name = String(k)) => {
		if (!within(obj[k] as number | null, min, max)) {
			(obj as unknown as Record<string, unknown>)[k] = null;
			dropped.push(name);
		}
	};
	const memMax = b.memoryBytes && b.memoryBytes > 0 ? Math.min(b.memoryBytes, MAX_MEMORY_BYTES) : MAX_MEMORY_BYTES;
	const coreMax = b.cores && b.cores > 0 ? b.cores : MAX_CORES;
	check(run, "durationMs", 0, MAX_RUN_MS);
	check(run, "memoryBytes", 0, memMax);
	check(run, "avgCores", 0, coreMax);
	check(run, "p95Cores", 0, coreMax);
	check(run, "throttledFraction", 0, 1);
	check(run, "cpuPressure", 0, 100);
	check(run, "gpuPeakMiB", 0, MAX_GPU_MIB);
	const l = run.limits;
	const limit = (k: keyof typeof l, min: number, max: number) => {
		if (!within(l[k], min, max)) {
			run.limits = { ...run.limits, [k]: null };
			dropped.push(`limits.${k}`);
		}
	};
	limit("cpu", 0, MAX_CORES);
	limit("memoryBytes", 0, MAX_MEMORY_BYTES);
	limit("timeoutMs", 1, MAX_TIMEOUT_MS);
	if (!Number.isFinite(run.endedAt)) {
		run.endedAt = 0;
		dropped.push("endedAt");
	}
	return dropped;
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
