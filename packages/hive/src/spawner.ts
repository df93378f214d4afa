import { type ChildProcess, fork } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";

// The worker enters its cgroup before its command runs: a tiny POSIX sh
// wrapper writes its own pid to every cgroup.procs file, then execs the argv
// it was given. argv is passed as positional parameters, never as shell text.
// Then, as root, it drops to the worker's user (uid gid groups, or "-" to stay
// who it is) through util-linux's setpriv, with no-new-privileges: entering the
// cgroup needs root, the command must not have it.
export const ENTER =
	'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "apiary: cannot enter cgroup $1" >&2; exit 125; }; shift; n=$((n-1)); done; ' +
	'u=$1; g=$2; gs=$3; sp=$4; shift 4; [ "$u" = - ] && exec "$@"; ' +
	'if [ -n "$gs" ]; then exec "$sp" --reuid="$u" --regid="$g" --groups="$gs" --no-new-privs -- "$@"; fi; ' +
	'exec "$sp" --reuid="$u" --regid="$g" --clear-groups --no-new-privs -- "$@"';

/** The ENTER wrapper's arguments after the cgroup files: whom to become (or stay), and setpriv's path. */
export function runAsArgs(user: { uid: number; gid: number; groups: number[] } | null, setpriv: string): string[] {
	if (!user) return ["-", "-", "", "-"];
	return [String(user.uid), String(user.gid), user.groups.filter((g) => g !== user.gid).join(","), setpriv];
}

/**
 * A worker's environment: the hive's own, less what only describes the shell
 * the hive was started from (OLDPWD), plus the spawn's, with PWD set to the
 * worker's cwd as a login shell would set it (a stale PWD misleads tools that
 * trust it over getcwd(): make, git, Python's os.getcwd fallbacks).
 */
export function workerEnv(base: NodeJS.ProcessEnv, asked: Record<string, string> | undefined, cwd: string): NodeJS.ProcessEnv {
	const env: NodeJS.ProcessEnv = { ...base };
	delete env.OLDPWD;
	Object.assign(env, asked);
	env.PWD = cwd;
	return env;
}

/** Variables a shell sets by itself (`cd` writes both): the helper's script states them outright. */
export const SHELL_SET = ["PWD", "OLDPWD"] as const;

/** What the hive asks the helper to start. */
export interface SpawnAsk {
	rid: number;
	command: string[];
	procsFiles: string[];
	env: NodeJS.ProcessEnv;
	cwd: string;
	/** The worker's log file, for both stdout and stderr (opened for append). */
	logPath: string;
	/** runAsArgs(): whom the worker becomes once in its cgroup (default: it stays who the hive is). */
	runAs?: string[];
}

/** What the helper answers: a spawn's pid or failure, and later how each worker ended. */
export type HelperSays =
	| { t: "spawned"; rid: number; pid: number; pooled: boolean }
	| { t: "failed"; rid: number; message: string }
	| { t: "exit"; pid: number; code: number | null; signal: NodeJS.Signals | null }
	| { t: "error"; pid: number; message: string };

type ExitFn = (code: number | null, signal: NodeJS.Signals | null) => void;

/** A worker's main process as its parent (the helper) sees it. */
export class WorkerProcess {
	private ended: [number | null, NodeJS.Signals | null] | null = null;
	private exitFns: ExitFn[] = [];
	private lostFns: ((why: string) => void)[] = [];
	readonly pid: number;
	/** It was a shell forked ahead of time (else a fork made for it). */
	readonly pooled: boolean;
	constructor(pid: number, pooled: boolean) {
		this.pid = pid;
		this.pooled = pooled;
	}
	/** Called once with how it ended, also when that was before this call. */
	onExit(fn: ExitFn): void {
		const ended = this.ended;
		if (ended) queueMicrotask(() => fn(...ended));
		else this.exitFns.push(fn);
	}
	/** Called if its parent ended first: how it ends will not be known. */
	onLost(fn: (why: string) => void): void {
		this.lostFns.push(fn);
	}
	/** No more calls (the hive stops; the worker goes on). */
	detach(): void {
		this.exitFns = [];
		this.lostFns = [];
	}
	exited(code: number | null, signal: NodeJS.Signals | null): void {
		this.ended = [code, signal];
		for (const fn of this.exitFns.splice(0)) fn(code, signal);
	}
	lost(why: string): void {
		for (const fn of this.lostFns.splice(0)) fn(why);
	}
}

const HELPER = new URL("./spawn-helper.ts", import.meta.url);

/**
 * Forks workers from a small helper process rather than from the hive.
 * fork() copies the parent's page tables: here it costs ~1.2 ms plus
 * ~0.05 ms per MiB of the parent's RSS, so the hive (120+ MiB) blocked its
 * loop ~12 ms per spawn, while the helper (~45 MiB) forks in ~4 ms on its
 * own core. The helper is the workers' parent and reports each exit.
 */
export class SpawnHelper {
	private proc: ChildProcess | null = null;
	private rid = 0;
	private readonly asks = new Map<number, { resolve: (w: WorkerProcess) => void; reject: (e: Error) => void }>();
	private readonly children = new Map<number, WorkerProcess>();
	private readonly log: (msg: string, extra?: object) => void;
	private readonly pool: number;

	/** `pool`: shells kept forked ahead (default 4). */
	constructor(log: (msg: string, extra?: object) => void = () => {}, o: { pool?: number } = {}) {
		this.log = log;
		this.pool = o.pool ?? 4;
	}

	/** Starts the helper now (else the first spawn does): call it once the hive is in its own cgroup. */
	start(): void {
		if (this.proc) return;
		const p = fork(HELPER, [String(this.pool)], { stdio: ["ignore", "inherit", "inherit", "ipc"], serialization: "json" });
		p.on("message", (m: HelperSays) => this.said(m));
		p.on("error", (err) => this.log("spawn helper error", { err: err.message }));
		p.on("exit", (code, signal) => this.ended(p, `the hive's spawn helper ended (${signal ?? `exit ${code}`})`));
		// Neither the helper nor its channel keeps the hive alive; a pending ask does (see spawn).
		p.unref();
		p.channel?.unref();
		this.proc = p;
	}

	spawn(ask: Omit<SpawnAsk, "rid">): Promise<WorkerProcess> {
		this.start();
		const p = this.proc!;
		const rid = ++this.rid;
		return new Promise<WorkerProcess>((resolve, reject) => {
			this.asks.set(rid, { resolve, reject });
			if (this.asks.size === 1) p.channel?.ref();
			p.send({ ...ask, rid } satisfies SpawnAsk, (err) => {
				if (err) this.answer(rid, null, err);
			});
		});
	}

	/** Stops the helper; workers go on and nothing more is reported of them. */
	close(): void {
		const p = this.proc;
		this.proc = null;
		for (const w of this.children.values()) w.detach();
		this.children.clear();
		for (const rid of [...this.asks.keys()]) this.answer(rid, null, new Error("the hive is stopping"));
		if (p?.connected) p.disconnect();
	}

	private answer(rid: number, w: WorkerProcess | null, err?: Error): void {
		const ask = this.asks.get(rid);
		if (!ask) return;
		this.asks.delete(rid);
		if (this.asks.size === 0) this.proc?.channel?.unref();
		if (w) ask.resolve(w);
		else ask.reject(err ?? new Error("spawn failed"));
	}

	private said(m: HelperSays): void {
		switch (m.t) {
			case "spawned": {
				const w = new WorkerProcess(m.pid, m.pooled);
				this.children.set(m.pid, w);
				this.answer(m.rid, w);
				return;
			}
			case "failed":
				this.answer(m.rid, null, new Error(m.message));
				return;
			case "exit":
				this.children.get(m.pid)?.exited(m.code, m.signal);
				this.children.delete(m.pid);
				return;
			case "error":
				this.log("worker process error", { pid: m.pid, err: m.message });
		}
	}

	/** The helper died: asks in flight fail; its workers live on as orphans whose end only /proc can tell. */
	private ended(p: ChildProcess, why: string): void {
		if (this.proc !== p) return; // closed on purpose
		this.proc = null;
		this.log("the spawn helper ended; its workers are watched through /proc and a new helper starts with the next spawn", { why });
		for (const rid of [...this.asks.keys()]) this.answer(rid, null, new Error(why));
		const orphans = [...this.children.values()];
		this.children.clear();
		for (const w of orphans) w.lost(why);
	}
}

/** Resolve argv[0] like execvp would, so a typo is a 400 at spawn time rather than a worker exiting 127. */
export function resolveCommand(cmd: string, path: string | undefined, cwd: string): string | null {
	const isExec = (p: string) => {
		try {
			accessSync(p, constants.X_OK);
			return statSync(p).isFile();
		} catch {
			// Missing or not executable: not a candidate, as execvp would skip it.
			return false;
		}
	};
	if (cmd.includes("/")) {
		const p = isAbsolute(cmd) ? cmd : resolve(cwd, cmd);
		return isExec(p) ? p : null;
	}
	for (const dir of (path ?? "").split(delimiter)) {
		if (dir && isExec(join(dir, cmd))) return join(dir, cmd);
	}
	return null;
}
