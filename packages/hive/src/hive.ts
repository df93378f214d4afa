import type { ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Clock, systemClock } from "@apiary/kit/clock";
import { HttpError } from "@apiary/kit/errors";
import {
	checkId,
	type ExitReason,
	type ExitRecord,
	type GpuStatus,
	type Limits,
	type Snapshot,
	type WorkerInfo,
	type WorkerSpec, PROFILES, resolveLimits, type SpawnBody } from "@apiary/protocol";
import type { CgroupDriver, RawSample, WorkerReader } from "./cgroup/driver.ts";
import { parseProcStat } from "./proc.ts";

import { computeStats, type TimedSample } from "./sampler.ts";
import { resolveCommand, spawnWorker } from "./spawner.ts";
import { readOptional } from "./statfile.ts";


export interface GpuSource {
	status(): GpuStatus;
}

/** What a spawn asks for: the API's spawn body (declared once in @apiary/protocol). */
export type SpawnRequest = SpawnBody;

/** An error a client caused: the API answers it with this status (fastify renders its label). */
export class HiveError extends HttpError {
	override name = "HiveError";
}

interface Entry {
	info: WorkerInfo;
	child: ChildProcess | null;
	reader: WorkerReader | null;
	prev: TimedSample | null;
	lastRaw: RawSample | null;
	startedMono: number;
	/** /proc start time of the main pid, to recognise it across pid reuse. */
	startTicks: number | null;
	timer: NodeJS.Timeout | null;
	killReason: ExitReason | null;
	finishing: Promise<void> | null;
	/** The queen has acknowledged this worker's exit record. */
	reported: boolean;
}

export interface HiveOptions {
	driver: CgroupDriver;
	stateDir: string;
	hiveId: string;
	clock?: Clock;
	gpus?: GpuSource;
	/** How many exited workers' records are kept. */
	keepExited?: number;
	log?: (msg: string, extra?: object) => void;
}

/**
 * The hive's core: spawns workers into their cgroups, waits on them, samples
 * them every tick and keeps their records on disk so a restarted hive
 * re-adopts the ones still running.
 */
export class Hive extends EventEmitter {
	readonly driver: CgroupDriver;
	readonly hiveId: string;
	readonly instanceId = randomUUID();
	readonly stateDir: string;
	readonly clock: Clock;
	private readonly gpus: GpuSource | null;
	private readonly workers = new Map<string, Entry>();
	private readonly keepExited: number;
	private readonly log: (msg: string, extra?: object) => void;
	private seq = 0;
	private last: Snapshot | null = null;
	private ticking: Promise<Snapshot> | null = null;
	private loop: NodeJS.Timeout | null = null;

	constructor(o: HiveOptions) {
		super();
		this.driver = o.driver;
		this.hiveId = o.hiveId;
		this.stateDir = o.stateDir;
		this.clock = o.clock ?? systemClock;
		this.gpus = o.gpus ?? null;
		this.keepExited = o.keepExited ?? 1000;
		this.log = o.log ?? (() => {});
		mkdirSync(join(this.stateDir, "workers"), { recursive: true });
		mkdirSync(join(this.stateDir, "logs"), { recursive: true });
	}

	/** Prepare the cgroup root and re-adopt what a previous hive left running. */
	async start(): Promise<void> {
		this.driver.init();
		await this.readopt();
	}

	startLoop(intervalMs: number): void {
		const run = () => {
			this.tick()
				.catch((err) => this.log("tick failed", { err: String(err) }))
				.finally(() => {
					if (this.loop) this.loop = setTimeout(run, intervalMs);
				});
		};
		this.loop = setTimeout(run, 0);
	}

	/** Stop sampling. Workers keep running: a restarted hive re-adopts them. */
	async stop(): Promise<void> {
		if (this.loop) clearTimeout(this.loop);
		this.loop = null;
		await this.ticking;
		for (const e of this.workers.values()) {
			if (e.timer) clearTimeout(e.timer);
			e.reader?.close();
			e.child?.removeAllListeners("exit");
			e.child?.unref();
		}
	}

	logPath(id: string): string {
		return join(this.stateDir, "logs", `${id}.log`);
	}

	list(): WorkerInfo[] {
		return [...this.workers.values()].map((e) => e.info);
	}

	get(id: string): WorkerInfo | undefined {
		return this.workers.get(id)?.info;
	}

	snapshot(): Snapshot | null {
		return this.last;
	}

	spawn(req: SpawnRequest): WorkerInfo {
		const id = req.id === undefined ? `w-${randomBytes(4).toString("hex")}` : checkId(req.id, "id");
		if (this.workers.has(id)) throw new HiveError(409, `id ${id} is already in use on this hive`);
		if (req.command.length === 0) throw new HiveError(400, "command must have at least one element");
		if (req.profile !== undefined && !(req.profile in PROFILES)) {
			throw new HiveError(400, `profile ${JSON.stringify(req.profile)} is unknown (known: ${Object.keys(PROFILES).join(", ")})`);
		}
		const limits = resolveLimits(req.profile ?? null, { cpu: req.cpu, memoryBytes: req.memoryBytes, pids: req.pids, timeoutMs: req.timeoutMs });
		const gpus = this.checkGpus(req.gpus ?? []);
		const env: NodeJS.ProcessEnv = { ...process.env, ...req.env, APIARY_WORKER_ID: id, APIARY_HIVE_ID: this.hiveId };
		if (gpus.length > 0) {
			env.CUDA_VISIBLE_DEVICES = gpus.join(",");
			env.NVIDIA_VISIBLE_DEVICES = gpus.join(",");
		}
		const cwd = req.cwd ?? process.cwd();
		if (!resolveCommand(req.command[0]!, env.PATH, cwd)) throw new HiveError(400, `command: ${JSON.stringify(req.command[0])} is not an executable file or on PATH`);

		const spec: WorkerSpec = { id, command: req.command, profile: req.profile ?? null, limits, labels: req.labels ?? {}, gpus, env: req.env ?? {}, cwd };
		const created = this.driver.create(id, limits);
		const logFd = openSync(this.logPath(id), "a");
		let child: ChildProcess;
		try {
			child = spawnWorker({ command: req.command, procsFiles: created.procsFiles, env, cwd, logFd });
		} catch (err) {
			void this.driver.remove(id);
			throw err;
		} finally {
			closeSync(logFd);
		}
		const pid = child.pid ?? null;
		const now = this.clock.wall();
		const info: WorkerInfo = {
			...spec,
			pid,
			state: "running",
			startedAt: new Date(now).toISOString(),
			cgroup: this.driver.pathOf(id),
			adopted: false,
			stats: null,
			exit: null,
		};
		const entry: Entry = {
			info,
			child,
			reader: pid === null ? null : this.driver.reader(id, pid),
			prev: null,
			lastRaw: null,
			startedMono: this.clock.now(),
			startTicks: pid === null ? null : procStartTicks(pid),
			timer: null,
			killReason: null,
			finishing: null,
			reported: false,
		};
		this.workers.set(id, entry);
		child.on("error", (err) => this.log("worker spawn error", { id, err: String(err) }));
		child.on("exit", (code, signal) => {
			entry.finishing = this.finish(entry, code, signal);
		});
		if (limits.timeoutMs !== null) {
			entry.timer = setTimeout(() => void this.kill(id, "timeout").catch(() => {}), limits.timeoutMs);
			entry.timer.unref();
		}
		this.persist(entry);
		this.log("worker spawned", { id, pid, command: req.command });
		this.emit("spawned", info);
		return info;
	}

	private checkGpus(gpus: string[]): string[] {
		if (gpus.length === 0) return gpus;
		const status = this.gpus?.status();
		if (!status || status.gpus.length === 0) throw new HiveError(400, "gpus: this hive has no GPUs");
		for (const g of gpus) {
			if (!status.gpus.some((x) => String(x.index) === g || x.uuid === g)) {
				throw new HiveError(400, `gpus: ${JSON.stringify(g)} is not a GPU index or UUID of this hive`);
			}
		}
		return gpus;
	}

	/** Kill the worker's whole process tree. Resolves once its exit record is written. */
	async kill(id: string, reason: ExitReason = "killed"): Promise<WorkerInfo> {
		const e = this.workers.get(id);
		if (!e) throw new HiveError(404, `no worker ${id}`);
		if (e.info.state === "exited") return e.info;
		e.killReason ??= reason;
		// The worker's own process group first: right after spawn the wrapper may
		// not have entered the cgroup yet, so the cgroup alone could miss it.
		if (e.child && e.info.pid) {
			try {
				process.kill(-e.info.pid, "SIGKILL");
			} catch {}
		}
		await this.driver.killAll(id, e.info.pid ?? 0);
		if (e.child) {
			// The exit event follows the kill; the listener set at spawn runs first and starts the record.
			if (!e.finishing) await once(e.child, "exit");
		} else {
			e.finishing ??= this.finish(e, null, null, "exit status unknown: the worker was re-adopted after a hive restart, so the hive was not its parent");
		}
		await e.finishing;
		return e.info;
	}

	/** Runs once a worker's main process is gone: final read, leftovers killed, cgroup removed, record written. */
	private async finish(e: Entry, code: number | null, signal: NodeJS.Signals | null, message: string | null = null): Promise<void> {
		if (e.timer) clearTimeout(e.timer);
		const id = e.info.id;
		let final: RawSample | null = null;
		try {
			final = e.reader?.read() ?? null;
		} catch {}
		final ??= e.lastRaw;
		// Like systemd's KillMode=control-group: nothing outlives the worker.
		await this.driver.killAll(id, e.info.pid ?? 0).catch(() => {});
		try {
			const again = e.reader?.read();
			if (again) final = again;
		} catch {}
		e.reader?.close();
		e.reader = null;
		await this.driver.remove(id).catch((err) => this.log("cgroup removal failed", { id, err: String(err) }));

		const oomKills = final?.oomKills ?? null;
		const oomKilled = oomKills === null ? null : oomKills > 0;
		let reason: ExitReason;
		if (e.killReason) reason = e.killReason;
		else if (oomKilled) reason = "oom";
		else if (signal) reason = "signaled";
		else reason = "exited";
		const end = this.clock.wall();
		const started = Date.parse(e.info.startedAt);
		const exit: ExitRecord = {
			exitCode: code,
			signal: signal ?? null,
			reason,
			message,
			startedAt: e.info.startedAt,
			endedAt: new Date(end).toISOString(),
			durationMs: Math.max(0, end - started),
			peakMemoryBytes: final?.memoryPeak ?? null,
			oomKilled,
		};
		e.info.state = "exited";
		e.info.exit = exit;
		e.child = null;
		this.persist(e);
		this.prune();
		this.log("worker exited", { id, ...exit });
		this.emit("exited", e.info);
	}

	/** Sample every running worker once. One failing worker never fails the tick. */
	tick(): Promise<Snapshot> {
		this.ticking ??= this.sampleAll().finally(() => {
			this.ticking = null;
		});
		return this.ticking;
	}

	private async sampleAll(): Promise<Snapshot> {
		const t0 = this.clock.now();
		const running = [...this.workers.values()].filter((e) => e.info.state === "running");
		await this.driver.beginTick?.(running.map((e) => e.info.pid ?? 0));
		const gpu = this.gpus?.status() ?? { state: "absent", message: "GPU sampling disabled", ageMs: null, gpus: [] };
		const gpuByPid = new Map<number, { uuid: string; mib: number | null }[]>();
		for (const g of gpu.gpus) {
			for (const p of g.processes) {
				if (p.workerId === null) continue;
				const list = gpuByPid.get(p.pid) ?? [];
				list.push({ uuid: g.uuid, mib: p.usedMemoryMiB });
				gpuByPid.set(p.pid, list);
			}
		}
		for (const e of running) {
			if (e.info.adopted && !this.adoptedAlive(e)) {
				e.finishing ??= this.finish(e, null, null, "exit status unknown: the worker was re-adopted after a hive restart, so the hive was not its parent");
				continue;
			}
			try {
				const raw = e.reader?.read() ?? null;
				if (raw === null) continue; // exited mid-tick: its exit record follows
				const at = this.clock.now();
				const cur = { raw, at };
				const stats = computeStats(cur, e.prev, this.clock.wall(), at - e.startedMono);
				stats.gpuMemoryMiB = this.gpuMemoryOf(e, gpuByPid, gpu.gpus.length > 0);
				e.info.stats = stats;
				e.prev = cur;
				e.lastRaw = raw;
			} catch (err) {
				this.log("sampling a worker failed", { id: e.info.id, err: String(err) });
			}
		}
		const snap: Snapshot = {
			hiveId: this.hiveId,
			instanceId: this.instanceId,
			seq: ++this.seq,
			takenAt: new Date(this.clock.wall()).toISOString(),
			tickMs: Math.round((this.clock.now() - t0) * 1000) / 1000,
			driver: this.driver.info,
			workers: this.list(),
			gpu,
		};
		this.last = snap;
		this.emit("tick", snap);
		return snap;
	}

	private gpuMemoryOf(e: Entry, byPid: Map<number, { uuid: string; mib: number | null }[]>, haveGpus: boolean): Record<string, number> | null {
		if (!haveGpus) return null;
		const out: Record<string, number> = {};
		const pids = e.info.cgroup ? this.driver.pids(e.info.id) : e.info.pid ? [e.info.pid] : [];
		for (const pid of pids) for (const u of byPid.get(pid) ?? []) if (u.mib !== null) out[u.uuid] = (out[u.uuid] ?? 0) + u.mib;
		return out;
	}

	private adoptedAlive(e: Entry): boolean {
		const pid = e.info.pid;
		if (pid === null) return false;
		const ticks = procStartTicks(pid);
		return ticks !== null && (e.startTicks === null || ticks === e.startTicks);
	}

	// ---- persistence and re-adoption ------------------------------------------------

	private recordPath(id: string): string {
		return join(this.stateDir, "workers", `${id}.json`);
	}

	private persist(e: Entry): void {
		const path = this.recordPath(e.info.id);
		const { stats: _stats, ...rest } = e.info;
		writeFileSync(`${path}.tmp`, JSON.stringify({ ...rest, startTicks: e.startTicks, reported: e.reported }));
		renameSync(`${path}.tmp`, path);
	}

	private prune(): void {
		const exited = [...this.workers.values()].filter((e) => e.info.state === "exited");
		for (const e of exited.slice(0, Math.max(0, exited.length - this.keepExited))) {
			this.workers.delete(e.info.id);
			rmSync(this.recordPath(e.info.id), { force: true });
		}
	}

	private async readopt(): Promise<void> {
		const saved = new Map<string, WorkerInfo & { startTicks: number | null; reported?: boolean }>();
		for (const f of readdirSync(join(this.stateDir, "workers"))) {
			if (!f.endsWith(".json")) continue;
			try {
				const rec = JSON.parse(readFileSync(join(this.stateDir, "workers", f), "utf8"));
				saved.set(rec.id, rec);
			} catch (err) {
				this.log("unreadable worker record", { file: f, err: String(err) });
			}
		}
		const ids = new Set([...this.driver.list(), ...saved.keys()]);
		for (const id of ids) {
			const rec = saved.get(id);
			if (rec?.state === "exited") {
				const e = this.entryFrom(rec, null);
				e.reported = rec.reported === true;
				this.workers.set(id, e);
				continue;
			}
			const cgPids = this.driver.info.name === "none" ? [] : this.driver.pids(id);
			let pid = rec?.pid ?? null;
			let alive = pid !== null && procStartTicks(pid) !== null && (rec?.startTicks == null || procStartTicks(pid) === rec.startTicks);
			if (this.driver.info.name !== "none") {
				if (pid !== null && !cgPids.includes(pid)) alive = false;
				// A cgroup without a record (state dir lost): adopt it by its first process.
				if (!rec && cgPids.length > 0) {
					pid = cgPids[0]!;
					alive = true;
				}
			}
			const info: WorkerInfo = rec ?? {
				id,
				command: cmdlineOf(pid),
				profile: null,
				limits: { cpu: null, memoryBytes: null, pids: null, timeoutMs: null } satisfies Limits,
				labels: {},
				gpus: [],
				env: {},
				cwd: null,
				pid,
				state: "running",
				startedAt: new Date(this.clock.wall()).toISOString(),
				cgroup: this.driver.pathOf(id),
				adopted: true,
				stats: null,
				exit: null,
			};
			info.adopted = true;
			const e = this.entryFrom(info, pid === null ? null : this.driver.reader(id, pid));
			e.startTicks = rec?.startTicks ?? (pid === null ? null : procStartTicks(pid));
			this.workers.set(id, e);
			if (alive) {
				this.log("worker re-adopted", { id, pid });
				const timeout = info.limits.timeoutMs;
				if (timeout !== null) {
					const left = Math.max(0, Date.parse(info.startedAt) + timeout - this.clock.wall());
					e.timer = setTimeout(() => void this.kill(id, "timeout").catch(() => {}), left);
					e.timer.unref();
				}
			} else {
				if (cgPids.length > 0) await this.driver.killAll(id, pid ?? 0);
				e.killReason = "lost";
				e.finishing = this.finish(e, null, null, "exit status unknown: the worker ended while the hive was not running");
				await e.finishing;
			}
		}
	}

	private entryFrom(info: WorkerInfo, reader: WorkerReader | null): Entry {
		return {
			info: { ...info, stats: null },
			child: null,
			reader,
			prev: null,
			lastRaw: null,
			startedMono: this.clock.now() - Math.max(0, this.clock.wall() - Date.parse(info.startedAt)),
			startTicks: null,
			timer: null,
			killReason: null,
			finishing: null,
			reported: false,
		};
	}

	/** Files each running worker's reader reads per tick (for benchmarks). */
	readerFiles(): string[][] {
		return [...this.workers.values()].filter((e) => e.info.state === "running" && e.reader).map((e) => e.reader!.files());
	}

	/** Exit records the queen has acknowledged need not be sent again. */
	markReported(ids: string[]): void {
		for (const id of ids) {
			const e = this.workers.get(id);
			if (e && e.info.state === "exited" && !e.reported) {
				e.reported = true;
				this.persist(e);
			}
		}
	}

	/** Running workers plus exits the queen has not acknowledged: what a heartbeat carries. */
	unreported(): WorkerInfo[] {
		return [...this.workers.values()].filter((e) => e.info.state === "running" || !e.reported).map((e) => e.info);
	}
}

function procStartTicks(pid: number): number | null {
	const text = readOptional(`/proc/${pid}/stat`);
	if (text === null) return null;
	const s = parseProcStat(text);
	return s.state === "Z" ? null : s.startTicks;
}

function cmdlineOf(pid: number | null): string[] {
	if (pid === null) return [];
	const text = readOptional(`/proc/${pid}/cmdline`);
	return text ? text.split("\0").filter(Boolean) : [];
}
