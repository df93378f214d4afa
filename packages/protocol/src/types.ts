// Wire types shared by hive and queen. One snapshot per hive tick flows from
// the sampler to the hive API and over the socket to the queen unchanged.
// Every measured field is `number | null`: null means "not measured", never 0.

export type CgroupDriverName = "v2" | "v1" | "none";

export interface DriverInfo {
	name: CgroupDriverName;
	/** False when limits are only recorded, not enforced by the kernel. */
	enforced: boolean;
	/** The hive's cgroup root (per controller on v1), null for `none`. */
	root: string | null;
	/** Why this driver was chosen (or why a better one was not). */
	reason: string;
}

export interface Limits {
	/** CPU cores (0.5 = half a core). */
	cpu: number | null;
	memoryBytes: number | null;
	pids: number | null;
	timeoutMs: number | null;
}

export interface WorkerSpec {
	id: string;
	command: string[];
	profile: string | null;
	limits: Limits;
	labels: Record<string, string>;
	/** GPU indexes or UUIDs, exported as CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES. */
	gpus: string[];
	env: Record<string, string>;
	cwd: string | null;
}

export interface CpuStats {
	usageNs: number | null;
	/** Percent of one core over the last tick; null on the first sample. */
	percent: number | null;
	periods: number | null;
	throttledPeriods: number | null;
	throttledNs: number | null;
}

export interface MemoryStats {
	currentBytes: number | null;
	peakBytes: number | null;
	/** current - inactive_file, what kubelet/cAdvisor call the working set. */
	workingSetBytes: number | null;
	anonBytes: number | null;
	fileBytes: number | null;
	limitBytes: number | null;
	oomKills: number | null;
}

export interface IoStats {
	readBytes: number | null;
	writeBytes: number | null;
	readOps: number | null;
	writeOps: number | null;
	readBytesPerSec: number | null;
	writeBytesPerSec: number | null;
	readOpsPerSec: number | null;
	writeOpsPerSec: number | null;
}

export interface PidsStats {
	current: number | null;
	limit: number | null;
}

export interface PsiLine {
	avg10: number;
	avg60: number;
	avg300: number;
	totalUs: number;
}

export interface Pressure {
	some: PsiLine;
	full: PsiLine | null;
}

export interface PressureStats {
	cpu: Pressure | null;
	memory: Pressure | null;
	io: Pressure | null;
}

export interface WorkerStats {
	/** Wall-clock ms since epoch of the sample. */
	sampledAt: number;
	uptimeMs: number;
	cpu: CpuStats;
	memory: MemoryStats;
	io: IoStats;
	pids: PidsStats;
	pressure: PressureStats;
	/** GPU memory used by this worker's processes, MiB per GPU uuid. */
	gpuMemoryMiB: Record<string, number> | null;
}

export type ExitReason = "exited" | "signaled" | "killed" | "timeout" | "oom" | "spawn-failed" | "lost";

export interface ExitRecord {
	exitCode: number | null;
	signal: string | null;
	reason: ExitReason;
	/** Human-readable detail, e.g. why exitCode is null. */
	message: string | null;
	startedAt: string;
	endedAt: string;
	durationMs: number;
	peakMemoryBytes: number | null;
	oomKilled: boolean | null;
}

export type WorkerState = "running" | "exited";

export interface WorkerInfo extends WorkerSpec {
	pid: number | null;
	state: WorkerState;
	startedAt: string;
	cgroup: string | null;
	/** True when this hive process did not spawn it but re-adopted it after a restart. */
	adopted: boolean;
	stats: WorkerStats | null;
	exit: ExitRecord | null;
}

export interface GpuProcess {
	pid: number;
	usedMemoryMiB: number | null;
	workerId: string | null;
}

export interface GpuInfo {
	index: number;
	uuid: string;
	name: string;
	busId: string | null;
	memoryTotalMiB: number | null;
	memoryUsedMiB: number | null;
	memoryFreeMiB: number | null;
	utilizationGpu: number | null;
	utilizationMemory: number | null;
	temperatureC: number | null;
	powerDrawW: number | null;
	powerLimitW: number | null;
	migMode: "Enabled" | "Disabled" | null;
	processes: GpuProcess[];
	/** Age of this GPU's last reading, ms. */
	ageMs: number;
	stale: boolean;
}

export interface GpuStatus {
	/** "ok", "absent" (no nvidia-smi / no driver), "stale" (hung or restarting), "error". */
	state: "ok" | "absent" | "stale" | "error" | "starting";
	message: string | null;
	/** Age of the newest GPU reading, ms; null when there never was one. */
	ageMs: number | null;
	gpus: GpuInfo[];
}

export interface HostFacts {
	hostname: string;
	os: string;
	kernel: string;
	arch: string;
	cpuModel: string;
	cores: number;
	memoryBytes: number;
}

export interface Snapshot {
	hiveId: string;
	instanceId: string;
	seq: number;
	takenAt: string;
	/** How long the tick took to sample every worker, ms. */
	tickMs: number;
	driver: DriverInfo;
	workers: WorkerInfo[];
	gpu: GpuStatus;
}
