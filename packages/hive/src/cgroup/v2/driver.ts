import { readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { waitUntil } from "@apiary/kit/wait";
import type { DriverInfo, Limits } from "@apiary/protocol";
import { StatFile, statBuf } from "../../statfile.ts";
import type { Pressure } from "@apiary/protocol";
import { type BadFile, BadFiles, type CgroupDriver, type CreatedCgroup, type RawSample, type WorkerReader } from "../driver.ts";
import { childCgroups, freezeCg, killPids, mkdirCg, mkdirWorkersCg, readCgOrEmpty, readPids, removeCg, type Thaw, tryWrite, writeCg } from "../fsutil.ts";
import { scanPressure } from "../psi.ts";
import { type CpuRaw, formatCpuMax, scanCpuStat } from "./cpu.ts";
import { type IoRaw, parseIoStat } from "./io.ts";
import { type MemoryStatRaw, scanMemoryEvents, scanMemoryStat } from "./memory.ts";

export const V2_CONTROLLERS = ["cpu", "memory", "io", "pids"] as const;

/**
 * cgroup v2 layout: <root>/hive holds the daemon when it has to move out of
 * <root> (no internal processes), <root>/workers/<id> one leaf per worker.
 */
export class CgroupV2Driver implements CgroupDriver {
	readonly info: DriverInfo;
	readonly mount: string;
	readonly root: string;
	private readonly workersDir: string;

	constructor(mount: string, root: string, reason: string) {
		this.mount = mount;
		this.root = root;
		this.workersDir = join(root, "workers");
		this.info = { name: "v2", enforced: true, root, reason };
	}

	init(): void {
		mkdirCg(this.root);
		// The no-internal-processes rule: a cgroup that distributes controllers to
		// children holds no processes itself, so the daemon moves to a leaf.
		const self = readPids(join(this.root, "cgroup.procs"));
		if (self.includes(process.pid)) {
			mkdirCg(join(this.root, "hive"));
			writeCg(join(this.root, "hive", "cgroup.procs"), String(process.pid));
		}
		// Enable controllers top-down from the mount down to workers/ (whose
		// children are the workers), writing only where one is missing.
		mkdirWorkersCg(this.workersDir);
		let dir = this.mount;
		for (const part of [...relative(this.mount, this.workersDir).split(sep), null]) {
			const enabled = readFileSync(join(dir, "cgroup.subtree_control"), "latin1").trim().split(/\s+/);
			const missing = V2_CONTROLLERS.filter((c) => !enabled.includes(c));
			if (missing.length > 0) writeCg(join(dir, "cgroup.subtree_control"), missing.map((c) => `+${c}`).join(" "));
			if (part !== null) dir = join(dir, part);
		}
	}

	pathOf(id: string): string {
		return join(this.workersDir, id);
	}

	create(id: string, limits: Limits): CreatedCgroup {
		const dir = this.pathOf(id);
		mkdirCg(dir);
		writeCg(join(dir, "cpu.max"), formatCpuMax(limits.cpu));
		writeCg(join(dir, "memory.max"), limits.memoryBytes === null ? "max" : String(limits.memoryBytes));
		// A worker over its memory limit is OOM-killed, not pushed into swap.
		if (limits.memoryBytes !== null) {
			try {
				writeCg(join(dir, "memory.swap.max"), "0");
			} catch {
				// No swap accounting on this kernel: there is no swap to push into either.
			}
		}
		writeCg(join(dir, "pids.max"), limits.pids === null ? "max" : String(limits.pids));
		return { path: dir, procsFiles: [join(dir, "cgroup.procs")] };
	}

	reader(id: string, _pid?: number, bad?: BadFile): WorkerReader {
		return new V2Reader(this.pathOf(id), bad);
	}

	list(): string[] {
		return childCgroups(this.workersDir);
	}

	pids(id: string): number[] {
		return readPids(join(this.pathOf(id), "cgroup.procs"));
	}

	freeze(id: string, timeoutMs: number): Promise<Thaw | null> {
		const dir = this.pathOf(id);
		return freezeCg(
			() => tryWrite(join(dir, "cgroup.freeze"), "1"),
			() => /^frozen 1$/m.test(readCgOrEmpty(join(dir, "cgroup.events"))),
			() => void tryWrite(join(dir, "cgroup.freeze"), "0"),
			timeoutMs,
		);
	}

	async killAll(id: string): Promise<void> {
		const dir = this.pathOf(id);
		try {
			// cgroup.kill (5.14+) kills every process atomically, forks included.
			writeCg(join(dir, "cgroup.kill"), "1");
		} catch {
			// Older kernels have no cgroup.kill: freeze so nothing can fork, kill, thaw.
			const frozen = tryWrite(join(dir, "cgroup.freeze"), "1");
			killPids(this.pids(id));
			if (frozen) tryWrite(join(dir, "cgroup.freeze"), "0");
		}
		await waitUntil(() => this.pids(id).length === 0, { timeoutMs: 5000 });
	}

	async remove(id: string): Promise<void> {
		await removeCg(this.pathOf(id));
	}

	async destroyRoot(): Promise<void> {
		// The daemon's own leaf can only go once this process has left it.
		await removeCg(this.root);
	}
}

export class V2Reader implements WorkerReader {
	private readonly f: Record<string, StatFile>;
	/** Where memory.stat's keys were last found (see findKeyValues). */
	private readonly memHints = new Int32Array(4).fill(-1);
	private readonly bad: BadFiles;
	constructor(dir: string, bad?: BadFile) {
		this.bad = new BadFiles(bad);
		const f = (name: string) => new StatFile(join(dir, name));
		this.f = {
			cpu: f("cpu.stat"),
			memCurrent: f("memory.current"),
			memPeak: f("memory.peak"),
			memStat: f("memory.stat"),
			memMax: f("memory.max"),
			memEvents: f("memory.events"),
			io: f("io.stat"),
			pids: f("pids.current"),
			pidsMax: f("pids.max"),
			cpuPsi: f("cpu.pressure"),
			memPsi: f("memory.pressure"),
			ioPsi: f("io.pressure"),
		};
	}

	files(): string[] {
		return Object.values(this.f).map((s) => s.path);
	}

	/** The file's length in statBuf; -1 when absent (not measured), -2 when unreadable (reported). */
	private fill(f: StatFile): number {
		try {
			return f.fill();
		} catch (err) {
			this.bad.report(f.path, err);
			return -2;
		}
	}

	private num(f: StatFile): number | null {
		try {
			return f.readNumber() ?? null;
		} catch (err) {
			this.bad.report(f.path, err);
			return null;
		}
	}

	private psi(f: StatFile, name: string): Pressure | null {
		const n = this.fill(f);
		if (n < 0) return null;
		try {
			return scanPressure(statBuf, n, name);
		} catch (err) {
			this.bad.report(f.path, err);
			return null;
		}
	}

	read(): RawSample | null {
		const r = this.f;
		// cpu.stat exists in every v2 cgroup: its absence means the cgroup is gone.
		// Each file is scanned from statBuf right after it is read, before the next
		// read; a malformed one nulls only its own fields.
		const nCpu = this.fill(r.cpu!);
		if (nCpu === -1) return null;
		let cpu: CpuRaw | null = null;
		if (nCpu >= 0) {
			try {
				cpu = scanCpuStat(statBuf, nCpu);
			} catch (err) {
				this.bad.report(r.cpu!.path, err);
			}
		}
		let mem: MemoryStatRaw | null = null;
		const nMem = this.fill(r.memStat!);
		if (nMem >= 0) {
			try {
				mem = scanMemoryStat(statBuf, nMem, this.memHints);
			} catch (err) {
				this.bad.report(r.memStat!.path, err);
			}
		}
		let oomKills: number | null = null;
		const nEv = this.fill(r.memEvents!);
		if (nEv >= 0) {
			try {
				oomKills = scanMemoryEvents(statBuf, nEv).oomKills;
			} catch (err) {
				this.bad.report(r.memEvents!.path, err);
			}
		}
		let io: IoRaw | null = null;
		try {
			const text = r.io!.read();
			io = text === null ? null : parseIoStat(text);
		} catch (err) {
			this.bad.report(r.io!.path, err);
		}
		return {
			cpuUsageNs: cpu?.usageNs ?? null,
			periods: cpu?.periods ?? null,
			throttledPeriods: cpu?.throttledPeriods ?? null,
			throttledNs: cpu?.throttledNs ?? null,
			memoryCurrent: this.num(r.memCurrent!),
			// memory.peak since kernel 5.19; absent on older kernels: not measured.
			memoryPeak: this.num(r.memPeak!),
			anonBytes: mem?.anonBytes ?? null,
			fileBytes: mem?.fileBytes ?? null,
			inactiveFileBytes: mem?.inactiveFileBytes ?? null,
			shmemBytes: mem?.shmemBytes ?? null,
			memoryLimit: this.num(r.memMax!),
			oomKills,
			readBytes: io?.readBytes ?? null,
			writeBytes: io?.writeBytes ?? null,
			readOps: io?.readOps ?? null,
			writeOps: io?.writeOps ?? null,
			pidsCurrent: this.num(r.pids!),
			pidsLimit: this.num(r.pidsMax!),
			pressure: { cpu: this.psi(r.cpuPsi!, "cpu.pressure"), memory: this.psi(r.memPsi!, "memory.pressure"), io: this.psi(r.ioPsi!, "io.pressure") },
		};
	}

	close(): void {
		for (const f of Object.values(this.f)) f.close();
	}
}
