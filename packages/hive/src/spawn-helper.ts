// The hive's fork server, a process of its own (see SpawnHelper in
// spawner.ts for why). It only forks: every check, the cgroup and the record
// stay in the hive. Messages in: SpawnAsk. Out: HelperSays. It ends with the
// hive's channel.
//
// A fork costs ~4 ms here even from this small process, so it keeps a few
// shells forked ahead (a zygote pool): each waits on its stdin for the script
// that makes it the worker (log, cwd, env, cgroups, exec). A spawn is then a
// pipe write, and the next fork happens after the answer, off the spawn's path.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { ENTER, type HelperSays, runAsArgs, SHELL_SET, type SpawnAsk } from "./spawner.ts";

/** The wrapper's "stay who you are". */
const STAY = runAsArgs(null, "");

/** Shells kept forked ahead (argv[2]; tests set 0 to take the on-demand path every time). */
const POOL = Number(process.argv[2] ?? 4);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

const send = (m: HelperSays) => process.send?.(m);
const ready: ChildProcess[] = [];
let refilling = false;

/** POSIX single quoting: safe for any bytes but NUL (which argv and env cannot hold). */
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function prefork(): ChildProcess | null {
	// detached: its own session and process group, so a Ctrl-C aimed at the
	// hive does not reach workers, and a restarted hive can re-adopt them.
	const sh = spawn("/bin/sh", [], { stdio: ["pipe", "ignore", "ignore"], detached: true });
	if (sh.pid === undefined) {
		sh.on("error", () => {}); // out of processes: the spawn falls back to a plain fork, which reports it
		return null;
	}
	sh.stdin!.on("error", () => {}); // it died waiting: found at the next take
	return sh;
}

/** Tops the pool up once no ask is waiting (setImmediate runs after the IPC reads queued now). */
function refill(): void {
	if (refilling) return;
	refilling = true;
	setImmediate(() => {
		refilling = false;
		if (ready.length < POOL) {
			const sh = prefork();
			if (sh) ready.push(sh);
			refill();
		}
	});
}

/**
 * The script that turns a waiting shell into the asked worker. Names that are
 * no shell identifier are left out: the cgroup-entering shell of a plain fork
 * drops them from the environment it execs with too.
 */
function script(ask: SpawnAsk): string {
	const lines = [`exec >>${q(ask.logPath)} 2>&1 </dev/null`, `cd -- ${q(ask.cwd)} || exit 125`];
	// Set or unset against the helper's own environment, which the waiting shell inherited; but `cd`
	// has just rewritten PWD and OLDPWD, so those two are stated whatever the helper's were.
	const own = (k: string) => (SHELL_SET.includes(k as (typeof SHELL_SET)[number]) ? undefined : process.env[k]);
	for (const [k, v] of Object.entries(ask.env)) if (v !== undefined && own(k) !== v && IDENT.test(k)) lines.push(`export ${k}=${q(v)}`);
	for (const k of new Set([...Object.keys(process.env), ...SHELL_SET])) if (ask.env[k] === undefined && IDENT.test(k)) lines.push(`unset ${k}`);
	lines.push(`set -- ${[String(ask.procsFiles.length), ...ask.procsFiles, ...(ask.runAs ?? STAY), ...ask.command].map(q).join(" ")}`, ENTER);
	// One line: the shell parses it whole before running any of it.
	return `${lines.join("; ")}\n`;
}

/** A waiting shell, forked now when the pool is empty (a burst): one fork per spawn either way. */
function take(): { sh: ChildProcess; pooled: boolean } | null {
	for (let sh = ready.shift(); sh; sh = ready.shift()) if (sh.exitCode === null && sh.signalCode === null && sh.stdin?.writable) return { sh, pooled: true };
	const sh = prefork();
	return sh && { sh, pooled: false };
}

function watch(child: ChildProcess, pid: number): void {
	child.on("exit", (code, signal) => send({ t: "exit", pid, code, signal }));
}

/** No shell could be forked ahead (EAGAIN…): a plain fork, whose failure is the spawn's answer. */
function fresh(ask: SpawnAsk, fd: number): void {
	const argv = ["-c", ENTER, "apiary-enter", String(ask.procsFiles.length), ...ask.procsFiles, ...(ask.runAs ?? STAY), ...ask.command];
	const child = spawn("/bin/sh", argv, { cwd: ask.cwd, env: ask.env, stdio: ["ignore", fd, fd], detached: true });
	const pid = child.pid;
	child.on("error", (err) => send(pid === undefined ? { t: "failed", rid: ask.rid, message: err.message } : { t: "error", pid, message: err.message }));
	if (pid === undefined) return; // the exec of /bin/sh failed (EAGAIN, EMFILE…): 'error' answers
	send({ t: "spawned", rid: ask.rid, pid, pooled: false });
	watch(child, pid);
}

process.on("message", (ask: SpawnAsk) => {
	let fd: number | null = null;
	try {
		// Opened here either way: a log that cannot be opened fails the spawn, as it would a plain fork.
		fd = openSync(ask.logPath, "a");
		const got = take();
		if (got) {
			const { sh, pooled } = got;
			sh.stdin!.end(script(ask));
			sh.on("error", (err) => send({ t: "error", pid: sh.pid!, message: err.message }));
			send({ t: "spawned", rid: ask.rid, pid: sh.pid!, pooled });
			watch(sh, sh.pid!);
		} else {
			fresh(ask, fd);
		}
	} catch (err) {
		send({ t: "failed", rid: ask.rid, message: (err as Error).message });
	} finally {
		if (fd !== null) closeSync(fd);
		refill();
	}
});

// The hive is gone: its workers go on (a restarted hive re-adopts them); the
// waiting shells read the end of their stdin and exit.
process.on("disconnect", () => {
	for (const sh of ready) sh.stdin?.end();
	process.exit(0);
});
refill();
