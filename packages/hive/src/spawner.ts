import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";

// The worker enters its cgroup before its command runs: a tiny POSIX sh
// wrapper writes its own pid to every cgroup.procs file, then execs the argv
// it was given. argv is passed as positional parameters, never as shell text.
const ENTER =
	'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "apiary: cannot enter cgroup $1" >&2; exit 125; }; shift; n=$((n-1)); done; exec "$@"';

export interface SpawnOptions {
	command: string[];
	procsFiles: string[];
	env: NodeJS.ProcessEnv;
	cwd: string;
	/** fd of the worker's log file, for both stdout and stderr. */
	logFd: number;
}

export function spawnWorker(o: SpawnOptions): ChildProcess {
	const argv = ["-c", ENTER, "apiary-enter", String(o.procsFiles.length), ...o.procsFiles, ...o.command];
	// detached: its own session and process group, so a Ctrl-C aimed at the hive
	// does not reach workers, and a restarted hive can re-adopt them.
	return spawn("/bin/sh", argv, { cwd: o.cwd, env: o.env, stdio: ["ignore", o.logFd, o.logFd], detached: true });
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
