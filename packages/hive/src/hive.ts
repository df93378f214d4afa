// Over 300 lines on purpose: Hive is the worker lifecycle (spawn → running →
// stopping → finishing → exited, and re-adoption), transitions that share one
// Entry per worker. Everything pure is apart (exit-record, readopt-plan,
// gpu-attribution, usage, log-cap, storage-health, worker-records); splitting
// the transitions would only expose the Entry across files.
import { randomBytes, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { type Clock, systemClock } from "@apiary/kit/clock";
import { HttpError, messageOf } from "@apiary/kit/errors";
import { type LongTimer, longTimeout } from "@apiary/kit/timer";
import { waitUntil } from "@apiary/kit/wait";
import {
	type Actor,
	isValidId,
	type ExitReason,
	type GpuError,
	type GpuStatus,
	PROFILES,
	resolveLimits,
	type Snapshot,
	type SpawnBody,
	type StorageStatus,
	type WorkerInfo,
	type WorkerSpec,
} from "@apiary/protocol";
import type { CgroupDriver, CreatedCgroup, RawSample, WorkerReader } from "./cgroup/driver.ts";
import { kill9, shareWithGroup, signalQuietly } from "./cgroup/fsutil.ts";
import { buildExitRecord } from "./exit-record.ts";
import { gpuMemoryOf, gpuUseByPid } from "./gpu-attribution.ts";
import { HOST, type HostRoot } from "./host-root.ts";
import { procStartTicks } from "./procfs.ts";
import { planReadoption } from "./readopt-plan.ts";
import { computeStats, type TimedSample } from "./sampler.ts";
import { CREDENTIAL_VARS, chooseUser, type RunAsPolicy, readAccounts, type WorkerUser } from "./run-as.ts";
import { resolveCommand, runAsArgs, SpawnHelper, type WorkerProcess, workerEnv } from "./spawner.ts";
import { CHECK_MS, enforceBudget, FREEZE_MS, overHalf, rotateIfOver } from "./log-cap.ts";
import { StorageHealth } from "./storage-health.ts";
import { UsageTracker } from "./usage.ts";
import { infoOf, WorkerRecords } from "./worker-records.ts";

// The hive's supervisor: spawns workers into their cgroups, stops them,
// waits on them, samples them every tick. Records on disk
// (worker-records.ts), whether they can be written (storage-health.ts), what
// to do with a previous hive's workers (readopt-plan.ts), exit records
// (exit-record.ts), GPU attribution (gpu-attribution.ts) and log capping
// (log-cap.ts) live apart.
// Why this file is longer than the others: one worker's lifecycle (spawn →
// timeout or kill → finish → record → re-adoption) runs on one private entry
// per worker; splitting the steps would only export that state.

export interface GpuSource {
	status(): GpuStatus;
	/** Catches up with the kernel log (an application's Xid is logged before its process ends). */
	settle?(): Promise<void>;
	/** `queen gpu clear`: forgets the GPU's latched health causes; whether it had any. */
	clearHealth?(uuid: string): boolean;
}

/** What a spawn asks for: the API's spawn body (declared once in @apiary/protocol). */
export type SpawnRequest = SpawnBody;

/** An error a client caused: the API answers it with this status (fastify renders its label). */
export class HiveError extends HttpError {
	override name = "HiveError";
}

interface Entry {
	info: WorkerInfo;
	child: WorkerProcess | null;
	/** Why its end cannot be known, when the hive is not (or no longer) its parent's peer. */
	unknownEnd: string | null;
	reader: WorkerReader | null;
	prev: TimedSample | null;
	lastRaw: RawSample | null;
	startedMono: number;
	/** /proc start time of the main pid, to recognise it across pid reuse. */
	startTicks: number | null;
	timer: LongTimer | null;
	killReason: ExitReason | null;
	/** The hive sent the stop signal (a kill or a timeout)… */
	stopRequested: boolean;
	/** …and then SIGKILL, the grace period having run out. */
	forced: boolean;
	stopping: Promise<void> | null;
	finishing: Promise<void> | null;
	/** The queen has acknowledged this worker's exit record. */
	reported: boolean;
	/** The highest working set seen (page cache excluded, unlike v1's max_usage). */
	peakWorkingSet: number | null;
	/** What the run uses, tick by tick, for its exit record. */
	usage: UsageTracker;
}

export interface HiveOptions {
	driver: CgroupDriver;
	stateDir: string;
	hiveId: string;
	clock?: Clock;
	gpus?: GpuSource;
	/** Where /proc and /sys are (tests point them at fixtures). */
	host?: HostRoot;
	/** How many exited workers' records are kept. */
	keepExited?: number;
	/** Default time between the stop signal and SIGKILL (a spawn may set its own). */
	graceMs?: number;
	/** Default signal that starts a stop. */
	stopSignal?: NodeJS.Signals;
	/** Per-worker log cap (its two files together), newest output kept. */
	logMaxBytes?: number;
	/** All logs together: exited workers' logs go, oldest first, past this. */
	logDirBudgetBytes?: number;
	/** Whom workers run as (run-as.ts) and util-linux setpriv's path; absent: as the hive itself. */
	runAs?: RunAsPolicy & { setpriv: string };
	log?: (msg: string, extra?: object) => void;
}

const UNKNOWN_STATUS_ADOPTED = "exit status unknown: the worker was re-adopted after a hive restart, so the hive was not its parent";
const UNKNOWN_STATUS_ORPHANED = (why: string) => `exit status unknown: ${why} while the worker ran, so nothing saw it end`;

/** The hive's core: spawn, kill, sample, re-adopt. Events: spawned, exited, tick. */
export class Hive extends EventEmitter {
	readonly driver: CgroupDriver;
	readonly hiveId: string;
	readonly instanceId = randomUUID();
	readonly stateDir: string;
	readonly clock: Clock;
	private readonly host: HostRoot;
	private readonly records: WorkerRecords;
	private readonly gpus: GpuSource | null;
	private readonly workers = new Map<string, Entry>();
	private readonly keepExited: number;
	private readonly graceMs: number;
	private readonly stopSignal: NodeJS.Signals;
	private readonly logMaxBytes: number;
	private readonly logDirBudgetBytes: number;
	private logTimer: NodeJS.Timeout | null = null;
	private logChecks = 0;
	private readonly capFailing = new Set<string>();
	private capping = false;
	private readonly log: (msg: string, extra?: object) => void;
	private seq = 0;
	private last: Snapshot | null = null;
	private ticking: Promise<Snapshot> | null = null;
	private loop: NodeJS.Timeout | null = null;
	private aliveFailing = false;
	private readonly storageHealth: StorageHealth;
	private readonly spawner: SpawnHelper;
	/** Ids whose spawn is under way (between its checks and its entry). */
	private readonly starting = new Set<string>();
	private readonly runAs: (RunAsPolicy & { setpriv: string }) | null;

	/** A cgroup file that could not be read: its fields are null; said once per worker and file. */
	private readonly badFile = (path: string, err: Error) => this.log("cgroup file unreadable; its fields are null", { file: path, err: err.message });

	constructor(o: HiveOptions) {
		super();
		this.driver = o.driver;
		this.hiveId = o.hiveId;
		this.stateDir = o.stateDir;
		this.clock = o.clock ?? systemClock;
		this.host = o.host ?? HOST;
		this.gpus = o.gpus ?? null;
		this.keepExited = o.keepExited ?? 1000;
		this.graceMs = o.graceMs ?? 10_000;
		this.stopSignal = o.stopSignal ?? "SIGTERM";
		this.logMaxBytes = o.logMaxBytes ?? 64 * 2 ** 20;
		this.logDirBudgetBytes = o.logDirBudgetBytes ?? 2 ** 30;
		this.log = o.log ?? (() => {});
		this.runAs = o.runAs ?? null;
		this.records = new WorkerRecords(o.stateDir);
		this.storageHealth = new StorageHealth(o.stateDir, () => this.clock.wall(), this.log);
		this.spawner = new SpawnHelper(this.log);
	}

	/** Prepare the cgroup root and re-adopt what a previous hive left running. */
	async start(): Promise<void> {
		this.driver.init();
		// After init: on v2 the hive has moved to its own leaf, and the helper must start there.
		this.spawner.start();
		await this.readopt();
	}

	startLoop(intervalMs: number): void {
		const run = () => {
			this.tick()
				.then(() => this.markAlive())
				.catch((err) => this.log("tick failed", { err: messageOf(err) }))
				.finally(() => {
					if (this.loop) this.loop = setTimeout(run, intervalMs);
				});
		};
		this.loop = setTimeout(run, 0);
		this.logTimer = setInterval(() => void this.capLogs(), CHECK_MS);
		this.logTimer.unref();
	}

	/** Rotates logs past their cap (newest kept) and, every 5 s, keeps the logs dir within its budget. */
	async capLogs(): Promise<void> {
		// A rotation waits for a freeze: the next check skips while one runs.
		if (this.capping) return;
		this.capping = true;
		try {
			for (const e of [...this.workers.values()]) await this.capLog(e);
		} finally {
			this.capping = false;
		}
		this.enforceLogBudget();
	}

	private async capLog(e: Entry): Promise<void> {
		const id = e.info.id;
		if (e.info.state !== "running") return;
		const path = this.logPath(id);
		// The worker is frozen while its log is cut, so no line it writes falls
		// between the copy and the truncate (see log-cap.ts).
		const thaw = overHalf(path, this.logMaxBytes) && e.info.cgroup ? await this.driver.freeze?.(id, FREEZE_MS) : null;
		try {
			const r = rotateIfOver(path, this.logMaxBytes);
			if (r) {
				e.info.logDroppedBytes = (e.info.logDroppedBytes ?? 0) + r.dropped;
				this.persist(e);
			}
			this.capFailing.delete(id);
		} catch (err) {
			// Said once per worker while it keeps failing (a full disk would otherwise repeat it every 0.2 s).
			if (!this.capFailing.has(id)) this.log("capping a worker log failed", { id, err: messageOf(err) });
			this.capFailing.add(id);
		} finally {
			thaw?.();
		}
	}

	private enforceLogBudget(): void {
		if (++this.logChecks % Math.round(5000 / CHECK_MS) !== 0) return;
		try {
			const gone = enforceBudget(this.records.logsDir, this.logDirBudgetBytes, (id) => this.workers.get(id)?.info.state === "running");
			if (gone.length > 0) this.log("removed exited workers' logs to stay within the log budget", { ids: gone });
		} catch (err) {
			this.log("enforcing the log budget failed", { err: messageOf(err) });
		}
	}

	/** Stop sampling. Workers keep running: a restarted hive re-adopts them. */
	async stop(): Promise<void> {
		if (this.loop) clearTimeout(this.loop);
		this.loop = null;
		if (this.logTimer) clearInterval(this.logTimer);
		this.logTimer = null;
		await this.ticking;
		for (const e of this.workers.values()) {
			e.timer?.clear();
			e.reader?.close();
			e.child?.detach();
		}
		this.spawner.close();
	}

	/** Records that the hive was alive now (the bound an unobserved end gets after a restart). */
	private markAlive(): void {
		try {
			this.records.markAlive(this.clock.wall());
		} catch (err) {
			// A full or failing disk: the bound a later restart can give is only wider.
			if (!this.aliveFailing) this.log("cannot mark the hive alive in its state dir", { err: messageOf(err) });
			this.aliveFailing = true;
			return;
		}
		this.aliveFailing = false;
	}

	logPath(id: string): string {
		return this.records.logPath(id);
	}

	/** Pids seen in workers' cgroups on a host with GPUs (the newest 4096), for Xids about processes already gone. */
	private readonly recentPids = new Map<number, string>();

	/** The GPU status as the sampler has it. */
	gpuStatus(): GpuStatus {
		return this.gpus?.status() ?? { state: "absent", message: "GPU sampling disabled", ageMs: null, gpus: [] };
	}

	clearGpuHealth(uuid: string): boolean {
		return this.gpus?.clearHealth?.(uuid) ?? false;
	}

	/**
	 * An application's Xid (13, 31, 43, 45, 68, 109): into the record of the
	 * worker whose process raised it — by the pid's cgroup, else a pid seen in
	 * a worker's cgroup, else the worker's main pid, else the one worker
	 * holding that GPU — and, if it has ended, into its exit record. Not held
	 * against the GPU.
	 */
	gpuError(err: GpuError, cgroupOwner: (pid: number) => string | null): void {
		if (this.recentPids.size > 4096) for (const k of [...this.recentPids.keys()].slice(0, 1024)) this.recentPids.delete(k);
		const all = [...this.workers.values()];
		let id: string | null = null;
		if (err.pid !== null) {
			id = cgroupOwner(err.pid) ?? this.recentPids.get(err.pid) ?? all.find((e) => e.info.pid === err.pid)?.info.id ?? null;
		}
		if (id === null && err.gpu !== null) {
			const status = this.gpuStatus();
			const index = status.gpus.find((g) => g.uuid === err.gpu)?.index;
			const holders = all.filter((e) => e.info.state === "running" && e.info.gpus.some((g) => g === err.gpu || g === String(index)));
			if (holders.length === 1) id = holders[0]!.info.id;
		}
		const e = id === null ? undefined : this.workers.get(id);
		if (!e) {
			this.log("an application's Xid, for no worker of this hive", { ...err });
			return;
		}
		e.info.gpuErrors ??= [];
		const list = e.info.gpuErrors;
		if (list.length >= 64) return;
		list.push(err);
		if (e.info.exit) e.info.exit.gpuErrors = list;
		this.log("an application's Xid, in its worker's record", { id: e.info.id, ...err });
		this.persist(e);
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

	/**
	 * Starts a worker. Everything a client can get wrong is checked before the
	 * first side effect (a 400 naming the field); a step that fails after one
	 * undoes what was done (cgroup removed, process killed) before it throws.
	 */
	async spawn(req: SpawnRequest): Promise<WorkerInfo> {
		const id = req.id ?? `w-${randomBytes(4).toString("hex")}`;
		if (!isValidId(id))
			throw new HiveError(400, `id ${JSON.stringify(id)} is not valid: use 1-63 characters of a-z 0-9 . _ - starting with a letter or digit, no ".."`);
		if (this.workers.has(id) || this.starting.has(id)) throw new HiveError(409, `id ${id} is already in use on this hive`);
		if (this.storageHealth.failing) throw new HiveError(507, this.storageHealth.refusal());
		if (req.command.length === 0) throw new HiveError(400, "command must have at least one element");
		if (req.profile !== undefined && !(req.profile in PROFILES)) {
			throw new HiveError(400, `profile ${JSON.stringify(req.profile)} is unknown (known: ${Object.keys(PROFILES).join(", ")})`);
		}
		const limits = resolveLimits(req.profile ?? null, { cpu: req.cpu, memoryBytes: req.memoryBytes, pids: req.pids, timeoutMs: req.timeoutMs });
		const gpus = this.checkGpus(req.gpus ?? []);
		// Whom it runs as: a root hive's workers are not root (run-as.ts); asked-for users from --allow-user only.
		let user: WorkerUser | null = null;
		if (this.runAs) {
			const acc = readAccounts(this.host.etc);
			user = chooseUser(req.user, this.runAs, acc.passwd, acc.group);
		} else if (req.user !== undefined) throw new HiveError(403, `user: this hive runs every worker as itself; it cannot run one as ${req.user}`);
		const dropping = user !== null && user.uid !== process.getuid?.();
		// A worker that is not the hive's user starts in its own home (the hive's cwd is the hive's) unless it asks.
		const cwd = req.cwd ?? (dropping ? homeOrRoot(user!.home) : process.cwd());
		checkCwd(cwd);
		const env = workerEnv(process.env, req.env, cwd);
		// The hive's credentials never reach a worker, whatever the hive's own environment holds.
		for (const k of CREDENTIAL_VARS) if (req.env?.[k] === undefined) delete env[k];
		if (user) {
			env.HOME = user.home;
			env.USER = user.name;
			env.LOGNAME = user.name;
		}
		env.APIARY_WORKER_ID = id;
		env.APIARY_HIVE_ID = this.hiveId;
		if (gpus.length > 0) {
			env.CUDA_VISIBLE_DEVICES = gpus.join(",");
			env.NVIDIA_VISIBLE_DEVICES = gpus.join(",");
		}
		if (!resolveCommand(req.command[0]!, env.PATH, cwd))
			throw new HiveError(400, `command: ${JSON.stringify(req.command[0])} is not an executable file or on PATH`);

		const spec: WorkerSpec = {
			id,
			command: req.command,
			profile: req.profile ?? null,
			limits,
			labels: req.labels ?? {},
			gpus,
			env: req.env ?? {},
			cwd,
			stopSignal: req.stopSignal ?? this.stopSignal,
			graceMs: req.graceMs ?? this.graceMs,
			user: user?.name ?? null,
			placedBy: req.placedBy ?? null,
		};
		this.starting.add(id);
		try {
			return await this.launch(id, req, spec, env, cwd, dropping ? { args: runAsArgs(user, this.runAs!.setpriv), gid: user!.gid } : undefined);
		} finally {
			this.starting.delete(id);
		}
	}

	/** spawn()'s side effects, once every check passed: each undone if a later one fails. */
	private async launch(
		id: string,
		req: SpawnRequest,
		spec: WorkerSpec,
		env: NodeJS.ProcessEnv,
		cwd: string,
		runAs?: { args: string[]; gid: number },
	): Promise<WorkerInfo> {
		const limits = spec.limits;
		let created: CreatedCgroup;
		try {
			created = this.driver.create(id, limits);
			// Its own cgroup readable by its group, and nobody else's (the workers dir is not listable).
			if (runAs)
				shareWithGroup(
					created.procsFiles.map((f) => dirname(f)),
					runAs.gid,
				);
		} catch (err) {
			// A limit the kernel refused: nothing of this worker may stay behind.
			this.undoCreate(id);
			throw err;
		}
		const info: WorkerInfo = {
			...spec,
			pid: null,
			state: "running",
			startedAt: new Date(this.clock.wall()).toISOString(),
			cgroup: this.driver.pathOf(id),
			adopted: false,
			stats: null,
			exit: null,
		};
		// Recorded before it runs: no record, no worker (a worker the hive cannot remember would be
		// lost on its restart), and a worker writing fast (its log on the same disk) could fill the
		// disk between its start and its record.
		try {
			this.records.save(info, null, false);
		} catch (err) {
			this.undoCreate(id);
			this.storageHealth.failed(null, err);
			throw new HiveError(507, `cannot record worker ${id} in ${this.stateDir}: ${messageOf(err)}; new workers are refused until it can`, { cause: err });
		}
		let child: WorkerProcess;
		try {
			child = await this.spawner.spawn({ command: req.command, procsFiles: created.procsFiles, env, cwd, logPath: this.logPath(id), runAs: runAs?.args });
		} catch (err) {
			// The log could not be opened or the exec of the wrapper failed (EAGAIN, EMFILE…): it never ran.
			this.records.remove(id);
			this.undoCreate(id);
			throw new HiveError(500, `spawning ${id} failed: the process could not be started: ${messageOf(err)}`, { cause: err });
		}
		const pid = child.pid;
		info.pid = pid;
		// Started now, not when its record was first written: its run's duration (and so its average cores) is its own.
		info.startedAt = new Date(this.clock.wall()).toISOString();
		const entry = this.entry(info, this.driver.reader(id, pid, this.badFile), this.clock.now());
		entry.child = child;
		entry.startTicks = procStartTicks(this.host.proc, pid);
		this.workers.set(id, entry);
		// With its pid now; if the disk filled meanwhile, kept in memory and written when it can (the earlier record
		// already names it: a restart finds its process in its cgroup).
		this.persist(entry);
		child.onExit((code, signal) => {
			entry.finishing = this.finish(entry, code, signal);
		});
		child.onLost((why) => {
			// Its parent is gone: from now on it is watched like a re-adopted worker.
			entry.child = null;
			entry.info.adopted = true;
			entry.unknownEnd = UNKNOWN_STATUS_ORPHANED(why);
		});
		if (limits.timeoutMs !== null) this.armTimeout(entry, limits.timeoutMs);
		this.log("worker spawned", { id, pid, command: req.command });
		this.emit("spawned", info);
		return info;
	}

	/** Removes what a failed spawn made: its cgroup (in the background: it may still hold a dying process). */
	private undoCreate(id: string): void {
		this.driver
			.killAll(id, 0)
			.then(() => this.driver.remove(id))
			.catch((err) => this.log("undoing a failed spawn failed", { id, err: messageOf(err) }));
	}

	private checkGpus(gpus: string[]): string[] {
		if (gpus.length === 0) return gpus;
		const status = this.gpus?.status();
		if (!status || status.gpus.length === 0) throw new HiveError(400, "gpus: this hive has no GPUs");
		for (const g of gpus) {
			if (!status.gpus.some((x) => String(x.index) === g || x.uuid === g || x.mig?.some((m) => m.uuid === g))) {
				throw new HiveError(400, `gpus: ${JSON.stringify(g)} is not a GPU index or UUID of this hive`);
			}
		}
		return gpus;
	}

	private armTimeout(e: Entry, ms: number): void {
		e.timer = longTimeout(() => {
			this.kill(e.info.id, "timeout").catch((err) => this.log("timeout kill failed", { id: e.info.id, err: messageOf(err) }));
		}, ms);
	}

	/**
	 * Stops a worker as Slurm, Nomad and kubelet do: its stop signal (SIGTERM
	 * unless it asked otherwise) to its process group and every process in its
	 * cgroup, then its grace period, then SIGKILL of whatever is left. Resolves
	 * once its exit record is written; the record says whether it was graceful.
	 */
	async kill(id: string, reason: ExitReason = "killed", by?: Actor): Promise<WorkerInfo> {
		const e = this.workers.get(id);
		if (!e) throw new HiveError(404, `no worker ${id}`);
		if (e.info.state === "exited") return e.info;
		// Who stopped it through the queen: in its record and in the exit the queen is told of.
		if (by && !e.info.stoppedBy) e.info.stoppedBy = by;
		e.stopping ??= this.stopWorker(e, reason);
		await e.stopping;
		return e.info;
	}

	private async stopWorker(e: Entry, reason: ExitReason): Promise<void> {
		e.killReason ??= reason;
		e.stopRequested = true;
		const { id, pid } = e.info;
		const signal = (e.info.stopSignal ?? this.stopSignal) as NodeJS.Signals;
		const grace = e.info.graceMs ?? this.graceMs;
		// The process group first: right after spawn the wrapper may not have
		// entered the cgroup yet; then everything in the cgroup (a process that
		// made a group of its own included).
		const ours = pid !== null && (e.child !== null || this.adoptedAlive(e));
		if (ours) signalQuietly(-pid, signal);
		for (const p of this.driver.pids(id)) signalQuietly(p, signal);
		const ended = await waitUntil(() => this.ended(e), { timeoutMs: grace, intervalMs: 20, clock: this.clock });
		if (!ended) {
			e.forced = true;
			if (ours) kill9(-pid);
			await this.driver.killAll(id, pid ?? 0);
		}
		if (e.child) {
			// The exit event follows; the listener set at spawn starts the record.
			if (!e.finishing) await new Promise<void>((r) => e.child!.onExit(() => r()));
		} else {
			e.finishing ??= this.finish(e, null, null, e.unknownEnd ?? UNKNOWN_STATUS_ADOPTED);
		}
		await e.finishing;
	}

	/** The worker's main process is gone (ours: its exit event came; re-adopted: its pid is no longer the same process). */
	private ended(e: Entry): boolean {
		return e.child ? e.finishing !== null : !this.adoptedAlive(e);
	}

	/** Runs once a worker's main process is gone: final read, leftovers killed, cgroup removed, record written. */
	private async finish(
		e: Entry,
		code: number | null,
		signal: NodeJS.Signals | null,
		message: string | null = null,
		unobserved?: { lastAliveWall: number | null },
	): Promise<void> {
		e.timer?.clear();
		const id = e.info.id;
		let final = this.readQuietly(e) ?? e.lastRaw;
		// Like systemd's KillMode=control-group: nothing outlives the worker.
		await this.driver.killAll(id, e.info.pid ?? 0).catch((err) => this.log("killing leftovers failed", { id, err: messageOf(err) }));
		final = this.readQuietly(e) ?? final;
		e.reader?.close();
		e.reader = null;
		await this.driver.remove(id).catch((err) => this.log("cgroup removal failed", { id, err: messageOf(err) }));
		// An application's Xid is logged before its process sees the error and ends: read the log up to now.
		await this.gpus?.settle?.().catch(() => {});
		const exit = buildExitRecord({
			code,
			signal: signal ?? null,
			killReason: e.killReason,
			final,
			message,
			startedAt: e.info.startedAt,
			endedWall: this.clock.wall(),
			graceful: e.stopRequested ? !e.forced : null,
			peakWorkingSetBytes: e.peakWorkingSet,
			unobserved,
		});
		exit.usage = e.usage.result(final, e.info.limits, exit.durationMs);
		if (e.info.gpuErrors?.length) exit.gpuErrors = e.info.gpuErrors;
		e.info.state = "exited";
		e.info.exit = exit;
		e.child = null;
		this.persist(e);
		this.prune();
		this.log("worker exited", { id, ...exit });
		this.emit("exited", e.info);
	}

	/** A last reading of a worker that is ending; null when its cgroup is already gone or unreadable (logged). */
	private readQuietly(e: Entry): RawSample | null {
		try {
			return e.reader?.read() ?? null;
		} catch (err) {
			this.log("final read failed", { id: e.info.id, err: messageOf(err) });
			return null;
		}
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
		if (this.storageHealth.pending.size > 0) this.flushPending();
		const running = [...this.workers.values()].filter((e) => e.info.state === "running");
		await this.driver.beginTick?.(running.map((e) => e.info.pid ?? 0));
		const gpu = this.gpus?.status() ?? { state: "absent", message: "GPU sampling disabled", ageMs: null, gpus: [] };
		const byPid = gpuUseByPid(gpu);
		for (const e of running) {
			if (e.info.adopted && !this.adoptedAlive(e)) {
				e.finishing ??= this.finish(e, null, null, e.unknownEnd ?? UNKNOWN_STATUS_ADOPTED);
				continue;
			}
			try {
				const raw = e.reader?.read() ?? null;
				if (raw === null) continue; // exited mid-tick: its exit record follows
				const at = this.clock.now();
				const cur = { raw, at };
				const stats = computeStats(cur, e.prev, this.clock.wall(), at - e.startedMono);
				// The cgroup's pids are read only on a host with GPUs: a file read per worker per tick otherwise.
				if (gpu.gpus.length > 0) {
					const pids = e.info.cgroup ? this.driver.pids(e.info.id) : e.info.pid ? [e.info.pid] : [];
					stats.gpuMemoryMiB = gpuMemoryOf(pids, byPid);
					// Whose a pid was, for an Xid logged once it is gone.
					for (const p of pids) this.recentPids.set(p, e.info.id);
				}
				e.info.stats = stats;
				const ws = stats.memory.workingSetBytes;
				if (ws !== null && (e.peakWorkingSet === null || ws > e.peakWorkingSet)) e.peakWorkingSet = ws;
				e.usage.add(stats, raw, gpu);
				e.prev = cur;
				e.lastRaw = raw;
			} catch (err) {
				this.log("sampling a worker failed", { id: e.info.id, err: messageOf(err) });
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
			storage: this.storage(),
		};
		this.last = snap;
		this.emit("tick", snap);
		return snap;
	}

	private adoptedAlive(e: Entry): boolean {
		const pid = e.info.pid;
		if (pid === null) return false;
		const ticks = procStartTicks(this.host.proc, pid);
		return ticks !== null && (e.startTicks === null || ticks === e.startTicks);
	}

	// ---- records and re-adoption ----------------------------------------------------

	/**
	 * Writes a worker's record. On a full or failing disk the record stays in
	 * memory (the API and the queen still get it), is retried every tick, and
	 * new spawns are refused (507) until writes work again: the hive never
	 * crashes on ENOSPC or EIO.
	 */
	private persist(e: Entry): void {
		try {
			this.records.save(e.info, e.startTicks, e.reported);
			this.storageHealth.written(e.info.id);
		} catch (err) {
			this.storageHealth.failed(e.info.id, err);
		}
	}

	/** Records waiting to be written, tried again (each tick). */
	private flushPending(): void {
		for (const id of [...this.storageHealth.pending]) {
			const e = this.workers.get(id);
			if (!e) this.storageHealth.written(id);
			else this.persist(e);
			if (this.storageHealth.pending.has(id)) return; // still failing: try the rest next tick
		}
	}

	/** Whether the hive can write its state dir (healthz, snapshots, the queen). */
	storage(): StorageStatus {
		return this.storageHealth.status();
	}

	private prune(): void {
		const exited = [...this.workers.values()].filter((e) => e.info.state === "exited");
		for (const e of exited.slice(0, Math.max(0, exited.length - this.keepExited))) {
			this.workers.delete(e.info.id);
			this.records.remove(e.info.id);
		}
	}

	private async readopt(): Promise<void> {
		const saved = this.records.loadAll((file, err) => this.log("unreadable worker record", { file, err: messageOf(err) }));
		const lastAliveWall = this.records.lastAlive();
		const plan = planReadoption({
			saved,
			cgroups: this.driver.list(),
			driver: this.driver.info.name,
			pidsOf: (id) => this.driver.pids(id),
			startTicksOf: (pid) => procStartTicks(this.host.proc, pid),
		});
		for (const a of plan) {
			if (a.kind === "exited") {
				const e = this.entry(infoOf(a.rec), null);
				e.reported = a.rec.reported === true;
				this.workers.set(a.id, e);
				continue;
			}
			if (a.kind === "foreign") {
				// Not this hive's (its record, written before any worker runs, is the ownership mark): never listed, adopted or killed.
				this.log("a cgroup under the root has no record of this hive's: left alone", {
					id: a.id,
					cgroup: this.driver.pathOf(a.id),
					pids: this.driver.pids(a.id),
				});
				continue;
			}
			const info = infoOf(a.rec);
			info.adopted = true;
			const e = this.entry(info, a.pid === null ? null : this.driver.reader(a.id, a.pid, this.badFile));
			e.startTicks = a.rec.startTicks ?? (a.pid === null ? null : procStartTicks(this.host.proc, a.pid));
			this.workers.set(a.id, e);
			if (a.kind === "adopt") {
				this.log("worker re-adopted", { id: a.id, pid: a.pid });
				const timeout = info.limits.timeoutMs;
				if (timeout !== null) this.armTimeout(e, Math.max(0, Date.parse(info.startedAt) + timeout - this.clock.wall()));
			} else {
				if (a.leftovers) await this.driver.killAll(a.id, a.pid ?? 0);
				e.killReason = "lost";
				e.finishing = this.finish(e, null, null, "exit status and time unknown: the worker ended while the hive was not running", { lastAliveWall });
				await e.finishing;
			}
		}
	}

	/** A fresh entry; `startedMono` defaults to the monotonic time matching its wall-clock start. */
	private entry(info: WorkerInfo, reader: WorkerReader | null, startedMono?: number): Entry {
		return {
			info: { ...info, stats: null },
			child: null,
			unknownEnd: null,
			reader,
			prev: null,
			lastRaw: null,
			startedMono: startedMono ?? this.clock.now() - Math.max(0, this.clock.wall() - Date.parse(info.startedAt)),
			startTicks: null,
			timer: null,
			killReason: null,
			stopRequested: false,
			forced: false,
			stopping: null,
			finishing: null,
			reported: false,
			peakWorkingSet: null,
			usage: new UsageTracker(info.gpus),
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

/** The working directory must exist and be a directory: else the spawn would fail after its cgroup was made. */
/** A user's home when it is a directory, else / (nobody's is /nonexistent). */
function homeOrRoot(home: string): string {
	try {
		return statSync(home).isDirectory() ? home : "/";
	} catch {
		return "/";
	}
}

function checkCwd(cwd: string): void {
	let st: ReturnType<typeof statSync>;
	try {
		st = statSync(cwd);
	} catch {
		throw new HiveError(400, `cwd: ${JSON.stringify(cwd)} does not exist`);
	}
	if (!st.isDirectory()) throw new HiveError(400, `cwd: ${JSON.stringify(cwd)} is not a directory`);
}
