import { existsSync, readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { DriverInfo } from "@apiary/protocol";
import pidusage from "pidusage";
import { CLK_TCK, PAGE_SIZE, parseProcIo, parseProcStat } from "../proc.ts";
import { readOptional } from "../statfile.ts";
import { kill9, killPids } from "./fsutil.ts";
import { type CgroupDriver, type CreatedCgroup, emptyRawSample, type RawSample, type WorkerReader } from "./driver.ts";

/**
 * No writable cgroups (not root, macOS, read-only /sys/fs/cgroup): plain spawn
 * and process-tree sampling. Limits are recorded but not enforced, and the
 * API says so (`enforced: false`). Counters of descendants that already exited
 * are lost, as with any procfs-based sampler.
 */
export class NoCgroupDriver implements CgroupDriver {
	readonly info: DriverInfo;
	private readonly procRoot: string;
	private table = new Map<number, { ppid: number; stat: ReturnType<typeof parseProcStat> }>();
	private usage = new Map<number, { ctime: number; memory: number }>();

	constructor(reason: string, procRoot = "/proc") {
		this.procRoot = procRoot;
		this.info = { name: "none", enforced: false, root: null, reason };
	}

	get hasProcfs(): boolean {
		return existsSync(`${this.procRoot}/self/stat`);
	}

	init(): void {}

	create(): CreatedCgroup {
		return { path: "", procsFiles: [] };
	}

	pathOf(): null {
		return null;
	}

	/** One procfs scan per tick, shared by every worker's reader. */
	async beginTick(pids: number[]): Promise<void> {
		if (this.hasProcfs) {
			this.table = new Map();
			for (const name of readdirSync(this.procRoot)) {
				if (name.charCodeAt(0) > 57) continue; // not a pid
				const text = readOptional(`${this.procRoot}/${name}/stat`);
				if (text === null) continue;
				const stat = parseProcStat(text);
				this.table.set(stat.pid, { ppid: stat.ppid, stat });
			}
		} else if (pids.length > 0) {
			// No procfs (macOS): pidusage, for the worker's own process only.
			this.usage = new Map();
			const stats = await pidusage(pids).catch(() => ({}) as Record<string, { ctime: number; memory: number }>);
			for (const [pid, s] of Object.entries(stats)) if (s) this.usage.set(Number(pid), s);
		}
	}

	/** The pid and all its descendants from the last scan. */
	tree(pid: number): number[] {
		if (!this.table.has(pid)) return [];
		const children = new Map<number, number[]>();
		for (const [p, { ppid }] of this.table) {
			const list = children.get(ppid);
			if (list) list.push(p);
			else children.set(ppid, [p]);
		}
		const out: number[] = [];
		const stack = [pid];
		while (stack.length > 0) {
			const p = stack.pop()!;
			out.push(p);
			stack.push(...(children.get(p) ?? []));
		}
		return out;
	}

	reader(_id: string, pid: number): WorkerReader {
		return {
			read: () => (this.hasProcfs ? this.readProcfs(pid) : this.readPidusage(pid)),
			files: () => [],
			close: () => {},
		};
	}

	private readProcfs(pid: number): RawSample | null {
		const tree = this.tree(pid);
		if (tree.length === 0) return null;
		let ticks = 0;
		let rss = 0;
		let readBytes = 0;
		let writeBytes = 0;
		for (const p of tree) {
			const s = this.table.get(p)!.stat;
			ticks += s.utimeTicks + s.stimeTicks;
			rss += s.rssPages * PAGE_SIZE;
			const io = readOptional(`${this.procRoot}/${p}/io`);
			if (io !== null) {
				const v = parseProcIo(io);
				readBytes += v.readBytes;
				writeBytes += v.writeBytes;
			}
		}
		return {
			...emptyRawSample(),
			cpuUsageNs: (ticks * 1e9) / CLK_TCK,
			memoryCurrent: rss,
			readBytes,
			writeBytes,
			pidsCurrent: tree.length,
		};
	}

	private readPidusage(pid: number): RawSample | null {
		const u = this.usage.get(pid);
		if (!u) return null;
		return { ...emptyRawSample(), cpuUsageNs: u.ctime * 1e6, memoryCurrent: u.memory };
	}

	list(): string[] {
		return [];
	}

	pids(): number[] {
		return [];
	}

	async killAll(_id: string, pid: number): Promise<void> {
		// Workers are spawned as their own process group; also kill descendants
		// that started a group of their own.
		await this.beginTick([pid]);
		const tree = this.tree(pid);
		kill9(-pid);
		killPids(tree);
		await sleep(0);
	}

	async remove(): Promise<void> {}

	async destroyRoot(): Promise<void> {}
}
