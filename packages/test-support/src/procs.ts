// Real daemons for end-to-end tests: `queen start` and `hive start` as child
// processes on loopback, with temp state, ended by pid.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDriver, detect } from "@apiary/hive";
import { queenDb } from "./queen-db.ts";

const require = createRequire(import.meta.url);
const HIVE_BIN = new URL("../../hive/bin/hive.js", import.meta.url).pathname;
const QUEEN_BIN = new URL("../../queen/bin/queen.js", import.meta.url).pathname;
export const FAKE_SMI = (s: string) => new URL(`../../hive/test/fixtures/nvidia-smi/${s}`, import.meta.url).pathname;

/**
 * A fake nvidia-smi on a copy of a scenario the test may change as it runs
 * (the fake reads it again before each block): `path` for --nvidia-smi,
 * `edit` to change the scenario.
 */
export function smiScenario(
	dir: string,
	fixture: string,
): { path: string; edit: (fn: (sc: { gpus: Record<string, unknown>[] } & Record<string, unknown>) => void) => void } {
	const file = join(dir, `${fixture}-${randomBytes(3).toString("hex")}.json`);
	writeFileSync(file, readFileSync(`${FAKE_SMI(fixture)}.json`));
	const path = `${file.slice(0, -5)}.sh`;
	writeFileSync(path, `#!/bin/sh\nexec "${process.execPath}" "${FAKE_SMI("fake-nvidia-smi.mjs")}" "${file}" "$@"\n`, { mode: 0o755 });
	return {
		path,
		edit: (fn) => {
			const sc = JSON.parse(readFileSync(file, "utf8"));
			fn(sc);
			writeFileSync(`${file}.tmp`, JSON.stringify(sc));
			renameSync(`${file}.tmp`, file);
		},
	};
}

export interface Daemon {
	proc: ChildProcess;
	url: string;
	port: number;
	out: () => string;
	err: () => string;
	/** Stop by signal and wait for the exit. */
	stop(signal?: NodeJS.Signals): Promise<void>;
}

function launch(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
	return startDaemon(process.execPath, [bin, ...args], { ...process.env, ...env });
}

/** A daemon started as `cmd args` with exactly `env` (an installed package's bin/queen, say), once it says where it listens. */
export async function startDaemon(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Daemon> {
	const bin = cmd;
	const proc = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	let err = "";
	proc.stdout!.on("data", (d) => {
		out += d;
	});
	proc.stderr!.on("data", (d) => {
		err += d;
	});
	const exited = new Promise<void>((r) => proc.once("exit", () => r()));
	const url = await new Promise<string>((resolve, reject) => {
		const t = setTimeout(() => reject(new Error(`${bin} did not start: ${out}${err}`)), 30_000);
		const check = () => {
			const m = /listening on (https?:\/\/\S+)/.exec(out);
			if (m) {
				clearTimeout(t);
				resolve(m[1]!);
			}
		};
		proc.stdout!.on("data", check);
		proc.once("exit", (code) => {
			clearTimeout(t);
			reject(new Error(`${bin} exited ${code}: ${out}${err}`));
		});
	});
	return {
		proc,
		url,
		port: Number(new URL(url).port),
		out: () => out,
		err: () => err,
		async stop(signal: NodeJS.Signals = "SIGTERM") {
			if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
			await exited;
		},
	};
}

export function tempDir(prefix: string): string {
	return mkdtempSync(join(tmpdir(), `apiary-test-${prefix}-`));
}

export interface QueenArgs {
	db: string;
	port?: number;
	staleAfter?: string;
	evictAfter?: string;
	tokenFile?: string;
	extra?: string[];
	/** On the SQLite file even in the postgres tier (a test of the file itself). */
	sqlite?: boolean;
	env?: NodeJS.ProcessEnv;
	/** The address to listen on (default 127.0.0.1). */
	host?: string;
	/** A command prefix it runs under (`ip netns exec NS`). */
	wrap?: string[];
}

/** A queen on `a.db`: that SQLite file, or in the postgres tier a database of its own for that path. */
export async function startQueen(a: QueenArgs): Promise<Daemon> {
	const args = [
		"start",
		"--listen",
		`${a.host ?? "127.0.0.1"}:${a.port ?? 0}`,
		"--db",
		a.sqlite ? a.db : await queenDb(a.db),
		"--stale-after",
		a.staleAfter ?? "1s",
		"--evict-after",
		a.evictAfter ?? "3s",
	];
	if (a.tokenFile) args.push("--token-file", a.tokenFile);
	if (a.wrap) return startDaemon(a.wrap[0]!, [...a.wrap.slice(1), process.execPath, QUEEN_BIN, ...args, ...(a.extra ?? [])], { ...process.env, ...a.env });
	return launch(QUEEN_BIN, [...args, ...(a.extra ?? [])], a.env);
}

/**
 * The API token of each hive a test started (by its origin): `json()` and
 * `runCli("hive")` give it, as a person's `hive …` commands find theirs in
 * the state dir, so the suites speak to a hive that requires one on loopback.
 */
const hiveTokens = new Map<string, string>();

/** The Authorization header a test's request to `url` needs, if it is a hive this test started. */
export function authFor(url: string): Record<string, string> {
	const t = hiveTokens.get(new URL(url).origin);
	return t ? { authorization: `Bearer ${t}` } : {};
}

export interface HiveArgs {
	/** The queen to report to; absent: a standalone hive. */
	queen?: string;
	name: string;
	stateDir: string;
	cgroupRoot: string;
	nvidiaSmi?: string;
	interval?: string;
	port?: number;
	tokenFile?: string;
	extra?: string[];
	/**
	 * Workers as root (`--worker-user root --allow-root-workers`), as the
	 * suites written before workers ran as another user expect (they write
	 * into the test's own 0700 folders); false: the hive's defaults.
	 */
	rootWorkers?: boolean;
	/** A command the hive runs under, e.g. ["setpriv", "--bounding-set", "-syslog"]. */
	wrap?: string[];
}

export async function startHive(a: HiveArgs): Promise<Daemon> {
	const args = [
		"start",
		"--listen",
		`127.0.0.1:${a.port ?? 0}`,
		...(a.queen ? ["--queen", a.queen] : []),
		"--name",
		a.name,
		"--state-dir",
		a.stateDir,
		"--cgroup-root",
		a.cgroupRoot,
		"--interval",
		a.interval ?? "250ms",
		"--nvidia-smi",
		a.nvidiaSmi ?? FAKE_SMI("a100x4"),
	];
	if (a.tokenFile) args.push("--token-file", a.tokenFile);
	if (a.rootWorkers !== false) args.push("--worker-user", "root", "--allow-root-workers");
	const d = a.wrap
		? await startDaemon(a.wrap[0]!, [...a.wrap.slice(1), process.execPath, HIVE_BIN, ...args, ...(a.extra ?? [])], { ...process.env })
		: await launch(HIVE_BIN, [...args, ...(a.extra ?? [])]);
	const token = a.tokenFile ? readFileSync(a.tokenFile, "utf8").trim() : readFileSync(join(a.stateDir, "api.token"), "utf8").trim();
	hiveTokens.set(new URL(d.url).origin, token);
	return d;
}

export const newCgroupRoot = () => `apiary-test-${randomBytes(4).toString("hex")}`;

/** Kill whatever workers remain under a test cgroup root and remove it. */
export async function removeCgroupRoot(rootName: string): Promise<void> {
	const driver = createDriver(detect({ requested: "v1", cgroupRoot: rootName }));
	for (const id of driver.list()) {
		await driver.killAll(id, 0);
		await driver.remove(id);
	}
	await driver.destroyRoot();
}

export function removeDir(dir: string): void {
	rmSync(dir, { recursive: true, force: true });
}

export async function json<T = any>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
	const given = new Headers(init?.headers);
	const auth = authFor(url);
	if (!given.has("authorization") && auth.authorization) given.set("authorization", auth.authorization);
	const res = await fetch(url, { ...init, headers: given });
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

export interface CliResult {
	code: number;
	stdout: string;
	stderr: string;
}

/** Runs a CLI (`hive` or `queen`) to the end: its exit code and output. */
export function runCli(cli: "hive" | "queen", args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<CliResult> {
	return new Promise((resolve) => {
		execFile(
			process.execPath,
			[cli === "hive" ? HIVE_BIN : QUEEN_BIN, ...args],
			{ env: { ...process.env, ...hiveEnv(cli, args, env), ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 },
			(err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
		);
	});
}

/** `hive …` commands against a hive this test started get its token, as they would read it from its state dir. */
function hiveEnv(cli: "hive" | "queen", args: string[], env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
	if (cli !== "hive") return {};
	const i = args.indexOf("--hive");
	const url = i >= 0 ? args[i + 1] : (env.APIARY_HIVE ?? process.env.APIARY_HIVE);
	if (!url) return {};
	const t = authFor(url).authorization?.slice("Bearer ".length);
	return t ? { APIARY_HIVE_TOKEN: t } : {};
}

/**
 * A placement that cannot be placed yet (a constraint pool of its own), sent
 * with a long waitMs and left open: the queen queues it until the request
 * is destroyed (its client gone). For bursts of waiters.
 */
export function holdPlacement(queenUrl: string, id: string): { destroy(): void } {
	const { request } = require("node:http") as typeof import("node:http");
	const body = JSON.stringify({ id, command: ["true"], constraints: { pool: `nowhere-${id}` }, waitMs: 600_000 });
	const u = new URL(queenUrl);
	const req = request({
		host: u.hostname,
		port: Number(u.port),
		method: "POST",
		path: "/v1/workers",
		headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
	});
	req.on("error", () => {});
	req.end(body);
	return req;
}

/** The queen's logged events of these types from the start (`since=0`), read for `ms` from its stream. */
export async function loggedEvents(
	queenUrl: string,
	types: string,
	ms = 1000,
	headers: Record<string, string> = {},
): Promise<{ id: number; type: string; hiveId: string | null; workerId: string | null; data: unknown }[]> {
	const ac = new AbortController();
	const res = await fetch(`${queenUrl}/v1/events?since=0&types=${types}`, { signal: ac.signal, headers });
	const reader = res.body!.getReader();
	let text = "";
	const t = setTimeout(() => ac.abort(), ms);
	try {
		for (;;) {
			const { value, done } = await reader.read();
			if (done) break;
			text += Buffer.from(value).toString("utf8");
		}
	} catch {
		// aborted: all that came
	}
	clearTimeout(t);
	return text
		.split("\n")
		.filter((l) => l.startsWith("data: "))
		.map((l) => JSON.parse(l.slice(6)));
}
