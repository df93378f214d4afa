import type { DriverInfo, Limits, PressureStats } from "@apiary/protocol";

/** Cumulative counters read from a worker's cgroup in one tick; rates come later from deltas. */
export interface RawSample {
	cpuUsageNs: number | null;
	periods: number | null;
	throttledPeriods: number | null;
	throttledNs: number | null;
	memoryCurrent: number | null;
	memoryPeak: number | null;
	anonBytes: number | null;
	fileBytes: number | null;
	inactiveFileBytes: number | null;
	/** tmpfs/shared memory (counted in file, but reclaim cannot drop it); anon + shmem is what right-sizing calls the working set. */
	shmemBytes: number | null;
	memoryLimit: number | null;
	oomKills: number | null;
	readBytes: number | null;
	writeBytes: number | null;
	readOps: number | null;
	writeOps: number | null;
	pidsCurrent: number | null;
	pidsLimit: number | null;
	pressure: PressureStats;
}

export interface WorkerReader {
	/**
	 * Reads every file once; null when the cgroup is gone. A file that is
	 * malformed or unreadable nulls only its own fields (partial stats, as
	 * cAdvisor pushes them) and is reported through the driver's BadFile.
	 */
	read(): RawSample | null;
	/** The files read each tick (benchmarks read the same ones raw, as the floor). */
	files(): string[];
	close(): void;
}

export interface CreatedCgroup {
	/** Where the worker lives (the v2 dir, or the memory hierarchy dir on v1). */
	path: string;
	/** cgroup.procs files the spawn wrapper writes its own pid to before exec. */
	procsFiles: string[];
}

export interface CgroupDriver {
	readonly info: DriverInfo;
	/** Create the root and its workers/ parent; idempotent. */
	init(): void;
	/** Create the worker's cgroup with its limits written, ready to be entered. */
	create(id: string, limits: Limits): CreatedCgroup;
	/** The worker's cgroup path, or null for drivers without cgroups. */
	pathOf(id: string): string | null;
	/** Reader for a worker; `pid` is used by drivers that sample the process tree; `bad` hears of each file that could not be read. */
	reader(id: string, pid: number, bad?: BadFile): WorkerReader;
	/** Ids of the worker cgroups that exist under the root (for re-adoption). */
	list(): string[];
	/** Pids in the worker's cgroup (empty when gone). */
	pids(id: string): number[];
	/**
	 * Freeze every process of the worker until the returned thaw is called;
	 * null when it cannot be frozen within `timeoutMs` (no freezer, or a
	 * process stuck in the kernel). Absent for drivers without cgroups.
	 */
	freeze?(id: string, timeoutMs: number): Promise<(() => void) | null>;
	/** Kill every process of the worker, at once and for good (no escape by forking). */
	killAll(id: string, pid: number): Promise<void>;
	/** Optional once-per-tick preparation shared by all readers (process table scan). */
	beginTick?(pids: number[]): Promise<void>;
	/** Remove the worker's (empty) cgroup; no-op when already gone. */
	remove(id: string): Promise<void>;
	/** Remove the whole (empty) root: used by tests and `hive cleanup`. */
	destroyRoot(): Promise<void>;
}

/** A sample with every field unmeasured (null), for readers that fill in what they can. */
export function emptyRawSample(): RawSample {
	return {
		cpuUsageNs: null,
		periods: null,
		throttledPeriods: null,
		throttledNs: null,
		memoryCurrent: null,
		memoryPeak: null,
		anonBytes: null,
		fileBytes: null,
		inactiveFileBytes: null,
		shmemBytes: null,
		memoryLimit: null,
		oomKills: null,
		readBytes: null,
		writeBytes: null,
		readOps: null,
		writeOps: null,
		pidsCurrent: null,
		pidsLimit: null,
		pressure: { cpu: null, memory: null, io: null },
	};
}

/** Told of a cgroup file whose fields were nulled this read, with why. */
export type BadFile = (path: string, err: Error) => void;

/**
 * Reports each unreadable file once per reader (not every tick). The readers
 * call it from plain try/catch blocks: no closure per file per tick on the
 * hot path (docs/BENCHMARKS.md, tick).
 */
export class BadFiles {
	private readonly seen = new Set<string>();
	private readonly bad: BadFile | undefined;
	constructor(bad: BadFile | undefined) {
		this.bad = bad;
	}
	report(path: string, err: unknown): void {
		if (this.seen.has(path)) return;
		this.seen.add(path);
		this.bad?.(path, err instanceof Error ? err : new Error(String(err)));
	}
}
