import { Type } from "@sinclair/typebox";
import { ID_PATTERN, LABEL_KEY_PATTERN } from "./ids.ts";
import { Nullable, type Static, StringEnum, StringMap } from "./schema.ts";
import { GpuError, GpuSignals, Health, HealthReason } from "./gpu-signals.ts";

// Wire types shared by hive and queen, each declared once as a schema whose
// Static<> is the type. One snapshot per hive tick flows from the sampler to
// the hive API and over the socket to the queen unchanged. Every measured
// field is `number | null`: null means "not measured", never 0.

const N = Nullable(Type.Number());
const Str = Type.String({ maxLength: 4096 });
const StrMap = Type.Record(Type.String(), Type.String());
/** Ids become cgroup and file names (see ids.ts). */
export const Id = Type.String({ pattern: ID_PATTERN, maxLength: 63 });

/** Labels of a worker or a hive: `k=v`, at most 64. */
export const Labels = StringMap(LABEL_KEY_PATTERN, { maxValueLength: 256, maxProperties: 64 });
export type Labels = Static<typeof Labels>;

export const CGROUP_DRIVERS = ["v2", "v1", "none"] as const;
export const CgroupDriverName = StringEnum(CGROUP_DRIVERS);
export type CgroupDriverName = Static<typeof CgroupDriverName>;

export const DriverInfo = Type.Object({
	name: CgroupDriverName,
	enforced: Type.Boolean({ description: "false when limits are only recorded, not enforced by the kernel" }),
	root: Nullable(Str),
	reason: Type.String({ maxLength: 1024, description: "why this driver was chosen (or why a better one was not)" }),
});
export type DriverInfo = Static<typeof DriverInfo>;

export const Limits = Type.Object({
	cpu: Nullable(Type.Number({ description: "CPU cores (0.5 = half a core)" })),
	memoryBytes: N,
	pids: N,
	timeoutMs: N,
});
export type Limits = Static<typeof Limits>;

/** Who placed or stopped a worker through the queen: the credential's id (null: --token-file) and name. */
export const Actor = Type.Object({ tokenId: Nullable(Type.String({ maxLength: 64 })), name: Type.String({ maxLength: 128 }) });
export type Actor = Static<typeof Actor>;

export const WorkerSpec = Type.Object({
	id: Id,
	command: Type.Array(Type.String()),
	profile: Nullable(Type.String()),
	limits: Limits,
	labels: StrMap,
	gpus: Type.Array(Type.String(), { description: "GPU indexes or UUIDs, exported as CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES" }),
	env: StrMap,
	cwd: Nullable(Str),
	stopSignal: Type.Optional(Type.String({ maxLength: 16, description: "sent to the worker's process group to stop it (default: the hive's, SIGTERM)" })),
	graceMs: Type.Optional(Type.Number({ description: "how long a stop waits after stopSignal before SIGKILL (default: the hive's, 10 s)" })),
	user: Type.Optional(Nullable(Type.String({ maxLength: 64, description: "the user it runs as; null: the hive's own (a hive that is not root)" }))),
	placedBy: Type.Optional(Nullable(Actor)),
	stoppedBy: Type.Optional(Nullable(Actor)),
});
export type WorkerSpec = Static<typeof WorkerSpec>;

export const CpuStats = Type.Object({
	usageNs: N,
	percent: Nullable(Type.Number({ description: "percent of one core over the last tick; null on the first sample" })),
	periods: N,
	throttledPeriods: N,
	throttledNs: N,
});
export type CpuStats = Static<typeof CpuStats>;

export const MemoryStats = Type.Object({
	currentBytes: N,
	peakBytes: N,
	workingSetBytes: Nullable(Type.Number({ description: "current - inactive_file, what kubelet/cAdvisor call the working set" })),
	anonBytes: N,
	fileBytes: N,
	limitBytes: N,
	oomKills: N,
});
export type MemoryStats = Static<typeof MemoryStats>;

export const IoStats = Type.Object({
	readBytes: N,
	writeBytes: N,
	readOps: N,
	writeOps: N,
	readBytesPerSec: N,
	writeBytesPerSec: N,
	readOpsPerSec: N,
	writeOpsPerSec: N,
});
export type IoStats = Static<typeof IoStats>;

export const PidsStats = Type.Object({ current: N, limit: N });
export type PidsStats = Static<typeof PidsStats>;

export const PsiLine = Type.Object({ avg10: Type.Number(), avg60: Type.Number(), avg300: Type.Number(), totalUs: Type.Number() });
export type PsiLine = Static<typeof PsiLine>;

export const Pressure = Type.Object({ some: PsiLine, full: Nullable(PsiLine) });
export type Pressure = Static<typeof Pressure>;

export const PressureStats = Type.Object({ cpu: Nullable(Pressure), memory: Nullable(Pressure), io: Nullable(Pressure) });
export type PressureStats = Static<typeof PressureStats>;

export const WorkerStats = Type.Object({
	sampledAt: Type.Number({ description: "wall-clock ms since the epoch of the sample" }),
	uptimeMs: Type.Number(),
	cpu: CpuStats,
	memory: MemoryStats,
	io: IoStats,
	pids: PidsStats,
	pressure: PressureStats,
	gpuMemoryMiB: Nullable(Type.Record(Type.String(), Type.Number(), { description: "GPU memory used by this worker's processes, MiB per GPU uuid" })),
});
export type WorkerStats = Static<typeof WorkerStats>;

/** `drained`: stopped at its hive's drain deadline (queen drain). */
export const EXIT_REASONS = ["exited", "signaled", "killed", "timeout", "oom", "spawn-failed", "lost", "drained"] as const;
export const ExitReason = StringEnum(EXIT_REASONS);
export type ExitReason = Static<typeof ExitReason>;

/**
 * What a run used, for right-sizing (seff's figures and more). Cumulative
 * counters (CPU, IO, pressure) are the cgroup's own, so they cover the whole
 * run; peaks, p95 and GPU figures cover the ticks the hive saw. Null: not
 * measured.
 */
export const RunUsage = Type.Object({
	ticks: Type.Integer({ description: "samples the peaks and p95 are taken from" }),
	cpu: Type.Object({
		seconds: Nullable(Type.Number({ description: "CPU time used (user + system), s" })),
		avgCores: Nullable(Type.Number({ description: "seconds / wall-clock duration" })),
		p95Cores: Nullable(Type.Number({ description: "95th percentile of the per-tick cores" })),
		throttledFraction: Nullable(Type.Number({ description: "throttled CFS periods / periods; null without a CPU limit (no periods)" })),
		limitCores: N,
		efficiency: Nullable(Type.Number({ description: "seff's CPU efficiency: seconds / (duration × cores allowed); null without a CPU limit" })),
	}),
	memory: Type.Object({
		peakWorkingSetBytes: Nullable(
			Type.Number({ description: "highest anon + shmem a tick saw: what reclaim cannot drop (page cache excluded, unlike the kernel's peak)" }),
		),
		kernelPeakBytes: Nullable(Type.Number({ description: "the kernel's own peak (memory.peak / max_usage_in_bytes; on v1 it counts page cache)" })),
		limitBytes: N,
		efficiency: Nullable(Type.Number({ description: "seff's memory efficiency: peak working set / limit; null without a limit" })),
	}),
	io: Type.Object({ readBytes: N, writeBytes: N }),
	pressure: Type.Object({
		cpuSome: Nullable(Type.Number({ description: "percent of the run some task waited for CPU (PSI, averaged over the run)" })),
		memorySome: N,
		memoryFull: N,
		ioSome: N,
		ioFull: N,
	}),
	gpus: Type.Array(
		Type.Object({
			uuid: Type.String({ maxLength: 128 }),
			peakMemoryMiB: Nullable(Type.Number({ description: "highest GPU memory this worker's processes used on it" })),
			avgUtilization: Nullable(Type.Number({ description: "mean GPU utilisation (percent) over the ticks it held the GPU" })),
		}),
		{ maxItems: 1024 },
	),
});
export type RunUsage = Static<typeof RunUsage>;

export const ExitRecord = Type.Object({
	exitCode: N,
	signal: Nullable(Type.String()),
	reason: ExitReason,
	message: Nullable(Type.String({ description: "human-readable detail, e.g. why exitCode is null" })),
	startedAt: Type.String(),
	endedAt: Nullable(Type.String({ description: "null when the end was not observed (the worker ended while its hive was down)" })),
	durationMs: Nullable(Type.Number({ description: "null when endedAt is" })),
	endedAfter: Type.Optional(Nullable(Type.String({ description: "an unobserved end: the last time the worker was known alive" }))),
	endedBefore: Type.Optional(Nullable(Type.String({ description: "an unobserved end: when it was found gone" }))),
	peakMemoryBytes: Nullable(Type.Number({ description: "the kernel's peak (on v1 it counts page cache)" })),
	peakWorkingSetBytes: Type.Optional(Nullable(Type.Number({ description: "the highest working set (usage − inactive file cache) seen by a tick" }))),
	oomKilled: Nullable(Type.Boolean()),
	usage: Type.Optional(Nullable(RunUsage)),
	gpuErrors: Type.Optional(Type.Array(GpuError, { maxItems: 64, description: "Xids its processes raised (application errors: 13, 31, 43, 45, 68, 109)" })),
	graceful: Type.Optional(
		Nullable(
			Type.Boolean({
				description: "true: the worker ended within its grace period after the stop signal; false: it was SIGKILLed; null: the hive did not stop it",
			}),
		),
	),
});
export type ExitRecord = Static<typeof ExitRecord>;

export const WorkerState = StringEnum(["running", "exited"] as const);
export type WorkerState = Static<typeof WorkerState>;

export const WorkerInfo = Type.Composite([
	WorkerSpec,
	Type.Object({
		pid: N,
		state: WorkerState,
		startedAt: Type.String(),
		cgroup: Nullable(Str),
		adopted: Type.Boolean({ description: "true when this hive process did not spawn it but re-adopted it after a restart" }),
		gpuErrors: Type.Optional(Type.Array(GpuError, { maxItems: 64, description: "Xids its processes raised" })),
		logDroppedBytes: Type.Optional(Type.Number({ description: "older output dropped to keep the log under the hive's --log-max (newest kept)" })),
		stats: Nullable(WorkerStats),
		exit: Nullable(ExitRecord),
	}),
]);
export type WorkerInfo = Static<typeof WorkerInfo>;

export const GpuProcess = Type.Object({ pid: Type.Number(), usedMemoryMiB: N, workerId: Nullable(Type.String()) });
export type GpuProcess = Static<typeof GpuProcess>;

/** A MIG instance of a GPU in MIG mode: placeable on its own, by its UUID. */
export const MigDevice = Type.Object({
	uuid: Type.String({ maxLength: 128 }),
	profile: Type.String({ maxLength: 32, description: "e.g. 3g.40gb" }),
	device: Type.Integer({ minimum: 0, maximum: 63 }),
	memoryMiB: Nullable(Type.Number({ description: "the profile's memory (its name's NNgb), MiB; null when the name does not say" })),
});
export type MigDevice = Static<typeof MigDevice>;

export const GpuInfo = Type.Object({
	index: Type.Integer({ minimum: 0, maximum: 1023 }),
	uuid: Type.String({ maxLength: 128 }),
	name: Type.String({ maxLength: 256 }),
	busId: Nullable(Type.String({ maxLength: 64 })),
	memoryTotalMiB: N,
	memoryUsedMiB: N,
	memoryFreeMiB: N,
	utilizationGpu: N,
	utilizationMemory: N,
	temperatureC: N,
	powerDrawW: N,
	powerLimitW: N,
	migMode: Nullable(StringEnum(["Enabled", "Disabled"] as const)),
	processes: Type.Array(GpuProcess, { maxItems: 4096 }),
	mig: Type.Optional(Type.Array(MigDevice, { maxItems: 64, description: "MIG instances (nvidia-smi -L), when MIG mode is on" })),
	signals: Type.Optional(GpuSignals),
	clockEvents: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64, description: "the active clock event reasons, by name" })),
	health: Type.Optional(Nullable(Health)),
	healthReasons: Type.Optional(Type.Array(HealthReason, { maxItems: 64 })),
	ageMs: Type.Number({ description: "age of this GPU's last reading, ms" }),
	stale: Type.Boolean(),
});
export type GpuInfo = Static<typeof GpuInfo>;

export const GpuStatus = Type.Object({
	state: StringEnum(["ok", "absent", "stale", "error", "starting"] as const, { description: "absent: no nvidia-smi or no driver; stale: hung or restarting" }),
	message: Nullable(Type.String()),
	ageMs: Nullable(Type.Number({ description: "age of the newest GPU reading, ms; null when there never was one" })),
	gpus: Type.Array(GpuInfo, { maxItems: 1024 }),
});
export type GpuStatus = Static<typeof GpuStatus>;

export const HostFacts = Type.Object({
	hostname: Type.String({ maxLength: 256 }),
	os: Type.String({ maxLength: 256 }),
	kernel: Type.String({ maxLength: 256 }),
	arch: Type.String({ maxLength: 64 }),
	cpuModel: Type.String({ maxLength: 256 }),
	cores: Type.Number(),
	memoryBytes: Type.Number(),
});
export type HostFacts = Static<typeof HostFacts>;

/** Whether the hive can write its state dir; while it cannot, it refuses new workers. */
export const StorageStatus = Type.Object({
	ok: Type.Boolean(),
	error: Nullable(Type.String({ description: "the last write error, e.g. ENOSPC" })),
	since: Nullable(Type.String({ description: "when writes started failing" })),
	pendingRecords: Type.Integer({ description: "worker records kept in memory until they can be written" }),
});
export type StorageStatus = Static<typeof StorageStatus>;

export const Snapshot = Type.Object({
	hiveId: Id,
	instanceId: Type.String(),
	seq: Type.Integer({ minimum: 0 }),
	takenAt: Type.String(),
	tickMs: Type.Number({ description: "how long the tick took to sample every worker, ms" }),
	driver: DriverInfo,
	workers: Type.Array(WorkerInfo),
	gpu: GpuStatus,
	storage: Type.Optional(StorageStatus),
});
export type Snapshot = Static<typeof Snapshot>;
