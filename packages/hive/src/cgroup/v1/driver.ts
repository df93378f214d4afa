import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "@apiary/kit/wait";
import type { DriverInfo, Limits } from "@apiary/protocol";
import { StatFile, statBuf } from "../../statfile.ts";
import type { Pressure } from "@apiary/protocol";
import { type BadFile, BadFiles, type CgroupDriver, type CreatedCgroup, type RawSample, type WorkerReader } from "../driver.ts";
import { childCgroups, freezeCg, killPids, mkdirCg, mkdirWorkersCg, readCgOrEmpty, readPids, removeCg, type Thaw, tryWrite, writeCg } from "../fsutil.ts";
import { scanPressure } from "../psi.ts";
import { scanBlkioV1, scanCpuStatV1, scanMemoryStatV1, scanOomControl } from "./stats.ts";

export const V1_REQUIRED = ["cpu", "cpuacct", "memory", "pids"] as const;
export const V1_OPTIONAL = ["blkio", "freezer"] as const;

/** Mount point per v1 controller (co-mounted ones share a dir), plus the v2 mount of a hybrid host. */
export interface V1Mounts {
	controllers: Record<string, string>;
	/** Hybrid hosts: the controller-less v2 mount still gives per-cgroup PSI. */
	unified: string | null;
}

// A throttle rule this high never throttles, but makes the kernel account the
// device in blkio.throttle.io_service_bytes (it stays 0 without any rule).
const NO_OP_BPS = "1099511627776";

/**
 * cgroup v1 (legacy and hybrid hosts): the same worker path under every
 * controller's hierarchy: <mount>/<root>/workers/<id>.
 */
export class CgroupV1Driver implements CgroupDriver {
	readonly info: DriverInfo;
	readonly mounts: V1Mounts;
	readonly rootName: string;
	private readonly hierarchies: string[];
	/** The host's /sys (for /sys/block). */
	private readonly sys: string;

	constructor(mounts: V1Mounts, rootName: string, reason: string, sys = "/sys") {
		this.sys = sys;
		this.mounts = mounts;
		this.rootName = rootName.replace(/^\/+|\/+$/g, "");
		// Only the hierarchies we use: joining e.g. cpuset would need cpus/mems set first.
		const used = [...V1_REQUIRED, ...V1_OPTIONAL].map((c) => mounts.controllers[c]).filter((d): d is string => !!d);
		const dirs = new Set(used);
		if (mounts.unified) dirs.add(mounts.unified);
		this.hierarchies = [...dirs];
		this.info = { name: "v1", enforced: true, root: join(this.mem(), this.rootName), reason };
	}

	private mem(): string {
		return this.mounts.controllers.memory!;
	}

	private dir(controller: string, id?: string): string | null {
		const mount = controller === "unified" ? this.mounts.unified : this.mounts.controllers[controller];
		if (!mount) return null;
		return id === undefined ? join(mount, this.rootName, "workers") : join(mount, this.rootName, "workers", id);
	}

	init(): void {
		for (const h of this.hierarchies) mkdirWorkersCg(join(h, this.rootName, "workers"));
	}

	pathOf(id: string): string {
		return this.dir("memory", id)!;
	}

	create(id: string, limits: Limits): CreatedCgroup {
		const dirs = this.hierarchies.map((h) => join(h, this.rootName, "workers", id));
		for (const d of dirs) mkdirCg(d);
		const cpu = this.dir("cpu", id)!;
		const period = 100_000;
		writeCg(join(cpu, "cpu.cfs_period_us"), String(period));
		writeCg(join(cpu, "cpu.cfs_quota_us"), limits.cpu === null ? "-1" : String(Math.max(1000, Math.round(limits.cpu * period))));
		const mem = this.dir("memory", id)!;
		writeCg(join(mem, "memory.limit_in_bytes"), limits.memoryBytes === null ? "-1" : String(limits.memoryBytes));
		writeCg(join(this.dir("pids", id)!, "pids.max"), limits.pids === null ? "max" : String(limits.pids));
		const blkio = this.dir("blkio", id);
		if (blkio) {
			for (const dev of blockDevices(this.sys)) {
				for (const f of ["blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"]) {
					// A device that refuses a rule (e.g. it vanished) is only left unaccounted.
					tryWrite(join(blkio, f), `${dev} ${NO_OP_BPS}`);
				}
			}
		}
		return { path: mem, procsFiles: dirs.map((d) => join(d, "cgroup.procs")) };
	}

	reader(id: string, _pid?: number, bad?: BadFile): WorkerReader {
		return new V1Reader((c) => this.dir(c, id), bad);
	}

	list(): string[] {
		return childCgroups(this.dir("memory")!);
	}

	pids(id: string): number[] {
		return readPids(join(this.dir("memory", id)!, "cgroup.procs"));
	}

	freeze(id: string, timeoutMs: number): Promise<Thaw | null> {
		const freezer = this.dir("freezer", id);
		if (!freezer) return Promise.resolve(null);
		const state = join(freezer, "freezer.state");
		return freezeCg(
			() => tryWrite(state, "FROZEN"),
			// The cgroup vanishing mid-wait (the worker ended) reads as not frozen.
			() => readCgOrEmpty(state).trim() === "FROZEN",
			() => void tryWrite(state, "THAWED"),
			timeoutMs,
		);
	}

	async killAll(id: string): Promise<void> {
		// The usual end: the worker's last process is gone. An empty cgroup gains
		// no process by itself, and freezing one costs ~6 ms of blocked loop here.
		if (this.pids(id).length === 0) return;
		// Freeze first so no process can fork a new one between listing and
		// killing; without a freezer, the kill is repeated until none is left.
		const thaw = await this.freeze(id, 1000);
		killPids(this.pids(id));
		thaw?.();
		await waitUntil(
			() => this.pids(id).length === 0,
			{ timeoutMs: 5000 },
			() => killPids(this.pids(id)),
		);
	}

	async remove(id: string): Promise<void> {
		for (const h of this.hierarchies) await removeCg(join(h, this.rootName, "workers", id));
	}

	async destroyRoot(): Promise<void> {
		for (const h of this.hierarchies) await removeCg(join(h, this.rootName));
	}
}

/** MAJ:MIN of the real block devices (not loop, ram, zram and other virtual ones) under `sys`/block. */
export function blockDevices(sys: string): string[] {
	let names: string[];
	try {
		names = readdirSync(`${sys}/block`);
	} catch {
		// No sysfs (a container without it): no device gets a no-op rule, so IO counters stay 0 on v1.
		return [];
	}
	return names.flatMap((d) => {
		try {
			if (realpathSync(`${sys}/block/${d}`).includes("/devices/virtual/")) return [];
			return [readFileSync(`${sys}/block/${d}/dev`, "latin1").trim()];
		} catch {
			// The device went away between the listing and the read.
			return [];
		}
	});
}

/**
 * One worker's files across the v1 hierarchies (and the hybrid v2 mount for
 * PSI). A malformed or unreadable file nulls only its own fields.
 */
export class V1Reader implements WorkerReader {
	private readonly f: Record<string, StatFile | null>;
	private readonly bad: BadFiles;
	constructor(dir: (controller: string) => string | null, bad?: BadFile) {
		this.bad = new BadFiles(bad);
		const file = (c: string, name: string) => {
			const d = dir(c);
			return d ? new StatFile(join(d, name)) : null;
		};
		this.f = {
			usage: file("cpuacct", "cpuacct.usage"),
			cpu: file("cpu", "cpu.stat"),
			memUsage: file("memory", "memory.usage_in_bytes"),
			memMax: file("memory", "memory.max_usage_in_bytes"),
			memStat: file("memory", "memory.stat"),
			memLimit: file("memory", "memory.limit_in_bytes"),
			oom: file("memory", "memory.oom_control"),
			ioBytes: file("blkio", "blkio.throttle.io_service_bytes"),
			ioOps: file("blkio", "blkio.throttle.io_serviced"),
			pids: file("pids", "pids.current"),
			pidsMax: file("pids", "pids.max"),
			cpuPsi: file("unified", "cpu.pressure"),
			memPsi: file("unified", "memory.pressure"),
			ioPsi: file("unified", "io.pressure"),
		};
	}

	files(): string[] {
		return Object.values(this.f).flatMap((s) => (s ? [s.path] : []));
	}

	// Reused per tick: the scanners fill these instead of allocating.
	private readonly memVals: (number | null)[] = [];
	private readonly memHints = new Int32Array(4).fill(-1);
	private readonly cpuVals: (number | null)[] = [];
	private readonly oomVals: (number | null)[] = [];

	/** The file's length in statBuf; -1 when absent or not mounted (not measured), -2 when unreadable (reported). */
	private fill(f: StatFile | null | undefined): number {
		if (!f) return -1;
		try {
			return f.fill();
		} catch (err) {
			this.bad.report(f.path, err);
			return -2;
		}
	}

	/** A one-number file: null when absent, "max" or unreadable; undefined when absent (the cgroup may be gone). */
	private num(f: StatFile | null | undefined): number | null | undefined {
		if (!f) return null;
		try {
			return f.readNumber();
		} catch (err) {
			this.bad.report(f.path, err);
			return null;
		}
	}

	private blkio(f: StatFile | null | undefined, name: string): { read: number; write: number } | null {
		const n = this.fill(f);
		if (n < 0) return null;
		try {
			return scanBlkioV1(statBuf, n, name);
		} catch (err) {
			this.bad.report(f!.path, err);
			return null;
		}
	}

	private psi(f: StatFile | null | undefined, name: string): Pressure | null {
		const n = this.fill(f);
		if (n < 0) return null;
		try {
			return scanPressure(statBuf, n, name);
		} catch (err) {
			this.bad.report(f!.path, err);
			return null;
		}
	}

	read(): RawSample | null {
		const f = this.f;
		// cpuacct.usage and memory.stat exist in every v1 worker cgroup: either
		// absent means the cgroup is gone. Each file is scanned from statBuf right
		// after it is read, before the next read; a malformed one nulls only its
		// own fields.
		const usage = this.num(f.usage);
		if (usage === undefined) return null;
		const nMem = this.fill(f.memStat);
		if (nMem === -1) return null;
		let mem: (number | null)[] | null = null;
		if (nMem >= 0) {
			try {
				mem = scanMemoryStatV1(statBuf, nMem, this.memVals, this.memHints);
			} catch (err) {
				this.bad.report(f.memStat!.path, err);
			}
		}
		let cpu: (number | null)[] | null = null;
		const nCpu = this.fill(f.cpu);
		if (nCpu >= 0) {
			try {
				cpu = scanCpuStatV1(statBuf, nCpu, this.cpuVals);
			} catch (err) {
				this.bad.report(f.cpu!.path, err);
			}
		}
		const limit = this.num(f.memLimit) ?? null;
		let oomKills: number | null = null;
		const nOom = this.fill(f.oom);
		if (nOom >= 0) {
			try {
				oomKills = scanOomControl(statBuf, nOom, this.oomVals)[0] ?? null;
			} catch (err) {
				this.bad.report(f.oom!.path, err);
			}
		}
		const ioBytes = this.blkio(f.ioBytes, "blkio.throttle.io_service_bytes");
		const ioOps = this.blkio(f.ioOps, "blkio.throttle.io_serviced");
		return {
			cpuUsageNs: usage,
			periods: cpu?.[0] ?? null,
			throttledPeriods: cpu?.[1] ?? null,
			throttledNs: cpu?.[2] ?? null,
			memoryCurrent: this.num(f.memUsage) ?? null,
			memoryPeak: this.num(f.memMax) ?? null,
			anonBytes: mem?.[0] ?? null,
			fileBytes: mem?.[1] ?? null,
			inactiveFileBytes: mem?.[2] ?? null,
			shmemBytes: mem?.[3] ?? null,
			// "no limit" is PAGE_COUNTER_MAX × page size, a huge number.
			memoryLimit: limit === null || limit >= 2 ** 62 ? null : limit,
			oomKills,
			readBytes: ioBytes?.read ?? null,
			writeBytes: ioBytes?.write ?? null,
			readOps: ioOps?.read ?? null,
			writeOps: ioOps?.write ?? null,
			pidsCurrent: this.num(f.pids) ?? null,
			pidsLimit: this.num(f.pidsMax) ?? null,
			pressure: { cpu: this.psi(f.cpuPsi, "cpu.pressure"), memory: this.psi(f.memPsi, "memory.pressure"), io: this.psi(f.ioPsi, "io.pressure") },
		};
	}

	close(): void {
		for (const s of Object.values(this.f)) s?.close();
	}
}
