import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { DriverInfo, Limits } from "@apiary/protocol";
import { StatFile, statBuf } from "../../statfile.ts";
import type { CgroupDriver, CreatedCgroup, RawSample, WorkerReader } from "../driver.ts";
import { childCgroups, killPids, mkdirCg, readPids, removeCg, writeCg } from "../fsutil.ts";
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

	constructor(mounts: V1Mounts, rootName: string, reason: string) {
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
		for (const h of this.hierarchies) mkdirCg(join(h, this.rootName, "workers"));
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
			for (const dev of blockDevices()) {
				for (const f of ["blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"]) {
					try {
						writeCg(join(blkio, f), `${dev} ${NO_OP_BPS}`);
					} catch {}
				}
			}
		}
		return { path: mem, procsFiles: dirs.map((d) => join(d, "cgroup.procs")) };
	}

	reader(id: string): WorkerReader {
		return new V1Reader((c) => this.dir(c, id));
	}

	list(): string[] {
		return childCgroups(this.dir("memory")!);
	}

	pids(id: string): number[] {
		return readPids(join(this.dir("memory", id)!, "cgroup.procs"));
	}

	async killAll(id: string): Promise<void> {
		const freezer = this.dir("freezer", id);
		// Freeze first so no process can fork a new one between listing and killing.
		let frozen = false;
		if (freezer) {
			try {
				writeCg(join(freezer, "freezer.state"), "FROZEN");
				frozen = true;
				const deadline = Date.now() + 1000;
				while (readFileSync(join(freezer, "freezer.state"), "latin1").trim() !== "FROZEN" && Date.now() < deadline) await sleep(2);
			} catch {}
		}
		killPids(this.pids(id));
		if (frozen) {
			try {
				writeCg(join(freezer!, "freezer.state"), "THAWED");
			} catch {}
		}
		const deadline = Date.now() + 5000;
		while (this.pids(id).length > 0 && Date.now() < deadline) {
			killPids(this.pids(id));
			await sleep(5);
		}
	}

	async remove(id: string): Promise<void> {
		for (const h of this.hierarchies) await removeCg(join(h, this.rootName, "workers", id));
	}

	async destroyRoot(): Promise<void> {
		for (const h of this.hierarchies) await removeCg(join(h, this.rootName));
	}
}

/** MAJ:MIN of the real block devices (not loop, ram, zram and other virtual ones). */
function blockDevices(): string[] {
	try {
		return readdirSync("/sys/block").flatMap((d) => {
			try {
				if (realpathSync(`/sys/block/${d}`).includes("/devices/virtual/")) return [];
				return [readFileSync(`/sys/block/${d}/dev`, "latin1").trim()];
			} catch {
				return [];
			}
		});
	} catch {
		return [];
	}
}

const num = (s: StatFile | null | undefined) => s?.readNumber() ?? null;
function blkio(s: StatFile | null | undefined, name: string) {
	const n = s ? s.fill() : -1;
	return n < 0 ? null : scanBlkioV1(statBuf, n, name);
}
function psi(s: StatFile | null | undefined, name: string) {
	const n = s ? s.fill() : -1;
	return n < 0 ? null : scanPressure(statBuf, n, name);
}

class V1Reader implements WorkerReader {
	private readonly f: Record<string, StatFile | null>;
	constructor(dir: (controller: string) => string | null) {
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
	private readonly memHints = new Int32Array(3).fill(-1);
	private readonly cpuVals: (number | null)[] = [];
	private readonly oomVals: (number | null)[] = [];

	read(): RawSample | null {
		const f = this.f;
		// Each file is scanned from statBuf right after it is read, before the next read.
		const usage = f.usage!.readNumber();
		const nMem = f.memStat!.fill();
		if (usage === undefined || nMem < 0) return null;
		const mem = scanMemoryStatV1(statBuf, nMem, this.memVals, this.memHints);
		const nCpu = f.cpu!.fill();
		const cpu = scanCpuStatV1(statBuf, Math.max(0, nCpu), this.cpuVals);
		const limit = f.memLimit!.readNumber();
		const nOom = f.oom!.fill();
		const oomKills = nOom < 0 ? null : scanOomControl(statBuf, nOom, this.oomVals)[0]!;
		const ioBytes = blkio(f.ioBytes, "blkio.throttle.io_service_bytes");
		const ioOps = blkio(f.ioOps, "blkio.throttle.io_serviced");
		return {
			cpuUsageNs: usage,
			periods: cpu[0]!,
			throttledPeriods: cpu[1]!,
			throttledNs: cpu[2]!,
			memoryCurrent: num(f.memUsage),
			memoryPeak: num(f.memMax),
			anonBytes: mem[0]!,
			fileBytes: mem[1]!,
			inactiveFileBytes: mem[2]!,
			// "no limit" is PAGE_COUNTER_MAX × page size, a huge number.
			memoryLimit: limit == null || limit >= 2 ** 62 ? null : limit,
			oomKills,
			readBytes: ioBytes?.read ?? null,
			writeBytes: ioBytes?.write ?? null,
			readOps: ioOps?.read ?? null,
			writeOps: ioOps?.write ?? null,
			pidsCurrent: num(f.pids),
			pidsLimit: num(f.pidsMax),
			pressure: { cpu: psi(f.cpuPsi, "cpu.pressure"), memory: psi(f.memPsi, "memory.pressure"), io: psi(f.ioPsi, "io.pressure") },
		};
	}

	close(): void {
		for (const s of Object.values(this.f)) s?.close();
	}
}
