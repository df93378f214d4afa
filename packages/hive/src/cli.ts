// Over 300 lines on purpose: every hive command's help text sits beside the
// flags it documents, so --help cannot drift from the parser.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { WorkerInfo } from "@apiary/protocol";

import { checkId, LABEL_KEY_PATTERN } from "@apiary/protocol/ids";
import { MAX_GRACE_MS } from "@apiary/protocol/limits";
import { formatBytes, formatDuration, parseDuration, parseSize, shellJoin } from "@apiary/protocol/units";
import { convertFlag, exitCodeFor, keyValues, parseFlags, serveUntilSignal, tlsFiles, UsageError } from "@apiary/kit/cli";
import { SPAWN_FLAGS, SPAWN_FLAGS_HELP, spawnBodyOf, splitCommand, stopSignalOf, within } from "@apiary/kit/spawn-flags";
import { call } from "@apiary/kit/client";
import { logsQuery, printLogs } from "@apiary/kit/logs-client";
import { loadCa, loadToken } from "@apiary/kit/listen";
import { defaultStateDir } from "@apiary/kit/state-dir";
import { readVersion } from "@apiary/kit/version";

// Client commands load only what they use: the daemon's modules (fastify,
// cgroup drivers, systeminformation) are imported by `start` alone.
const VERSION = readVersion(new URL("../package.json", import.meta.url));

const DEFAULT_HIVE = "http://127.0.0.1:7071";

const HELP: Record<string, string> = {
	main: `hive ${VERSION} — runs test workers in cgroups and reports them to the queen

Usage: hive <command> [options]

Commands:
  start            run the hive daemon
  spawn -- CMD...  start a worker and print its id
  ps               list workers
  kill ID          stop a worker (SIGTERM, grace period, then SIGKILL)
  logs ID          print a worker's output (-f to follow)

Run "hive <command> --help" for a command's options.
Clients talk to ${DEFAULT_HIVE} unless --hive URL or APIARY_HIVE says otherwise.`,
	start: `Usage: hive start [options]

  --listen HOST:PORT         API address (default 127.0.0.1:7071); not loopback needs TLS
  --tls-cert FILE            serve the API over HTTPS with this certificate (PEM chain), and show
                             it to the queen as this hive's client certificate (its CN the hive's
                             id: a queen with --tls-client-ca takes it as the hive's credential);
                             SIGHUP reloads it
  --tls-key FILE             …and this key
  --insecure-plaintext       listen off loopback without TLS all the same (token in clear)
  --name ID                  hive id (default: this host's name)
  --interval DURATION        sampling tick (default 1s)
  --cgroup-driver D          auto | v2 | v1 | none (default auto)
  --cgroup-root PATH         v2: cgroup dir (default: systemd-delegated cgroup, else
                             /sys/fs/cgroup/apiary.slice/<name>); v1: name under each
                             controller (default apiary/<name>). One hive per root and per
                             state dir: a second one refuses to start
  --state-dir DIR            records and logs (default $APIARY_STATE_DIR, /var/lib/apiary/hive
                             as root, else ~/.local/state/apiary/hive)
  --nvidia-smi PATH          nvidia-smi binary (default nvidia-smi on PATH)
  --no-remote-spawn          refuse workers placed through the queen (it still reports to it)
  --kmsg PATH                the kernel log read for GPU Xid events (default /dev/kmsg; a regular
                             file is followed as it grows; "none": not read, Xid health unknown)
  --cordon-on-unhealthy-gpu  the queen cordons this hive (reason auto:…) while one of its GPUs is
                             unhealthy, and lifts that cordon (never a person's) when all are well
  --label K=V                this hive's label, shown by the queen and used as a placement
                             constraint (repeatable), e.g. --label pool=a100 --label zone=b
  --gpu-interval DURATION    GPU sampling cadence (default: the tick, at least 1s)
  --grace DURATION           stop: time between the stop signal and SIGKILL (default 10s;
                             a spawn may set its own)
  --stop-signal SIG          stop: the signal that starts it (default SIGTERM)
  --log-max SIZE             per-worker log cap, newest output kept (default 64M)
  --log-budget SIZE          all logs together; exited workers' logs go first (default 1G)
  --token-file FILE          bearer token every route but /healthz needs (default $APIARY_TOKEN);
                             also this hive's credential for the queen, unless:
  --worker-user USER         as root, workers run as USER (default apiary-worker, else nobody),
                             with its groups and HOME, after entering their cgroup
  --allow-user U1,U2         users a spawn may ask for (--user)
  --allow-root-workers       allow workers to run as root (--worker-user root, or --user root)
  --queen-token-file FILE    this hive's credential for the queen: a hive token (queen token
                             create --role hive --hive ID) or an enrolment token, which the queen
                             answers with a secret of this hive's own, kept in the state dir
                             (queen.credential, 0600) and used from then on
  --ca FILE                  an https:// queen's certificate is checked against this CA
                             (default $APIARY_CA, else the system's CAs)
  --queen URL[,URL...]       queen to report to, e.g. http://127.0.0.1:7070 (default
                             $APIARY_QUEEN; none: a standalone hive); several: the next
                             is tried when one is unreachable

Workers keep running when the hive stops; a restarted hive re-adopts them.`,
	spawn: `Usage: hive spawn [options] -- CMD [ARG...]

${SPAWN_FLAGS_HELP}
  --gpus LIST        GPU indexes or UUIDs, e.g. 0,1
  --hive URL         hive API (default $APIARY_HIVE or ${DEFAULT_HIVE})
  --token-file FILE  bearer token (default $APIARY_HIVE_TOKEN, $APIARY_TOKEN, else
                     the hive's own: <state dir>/api.token)
  --state-dir DIR    the hive's state dir, where its api.token is (default $APIARY_STATE_DIR/hive,
                     /var/lib/apiary/hive as root)

Flags override the profile's values. Prints the worker id.`,
	ps: `Usage: hive ps [options]

  -a, --all          include exited workers
  --label K=V        only workers with this label
  --json             print JSON
  --hive URL         hive API (default $APIARY_HIVE or ${DEFAULT_HIVE})
  --token-file FILE  bearer token (default $APIARY_HIVE_TOKEN, $APIARY_TOKEN, else
                     the hive's own: <state dir>/api.token)
  --state-dir DIR    the hive's state dir, where its api.token is (default $APIARY_STATE_DIR/hive,
                     /var/lib/apiary/hive as root)`,
	kill: `Usage: hive kill ID [options]

Stops the worker: its stop signal (SIGTERM) to the whole tree, its grace period,
then SIGKILL of what is left; prints its exit record (graceful or not).

  --json             print JSON
  --hive URL         hive API (default $APIARY_HIVE or ${DEFAULT_HIVE})
  --token-file FILE  bearer token (default $APIARY_HIVE_TOKEN, $APIARY_TOKEN, else
                     the hive's own: <state dir>/api.token)
  --state-dir DIR    the hive's state dir, where its api.token is (default $APIARY_STATE_DIR/hive,
                     /var/lib/apiary/hive as root)`,
	logs: `Usage: hive logs ID [options]

  -f, --follow       keep printing until the worker exits
  -n, --tail N       only the last N lines (then follow with -f)
  --hive URL         hive API (default $APIARY_HIVE or ${DEFAULT_HIVE})
  --token-file FILE  bearer token (default $APIARY_HIVE_TOKEN, $APIARY_TOKEN, else
                     the hive's own: <state dir>/api.token)
  --state-dir DIR    the hive's state dir, where its api.token is (default $APIARY_STATE_DIR/hive,
                     /var/lib/apiary/hive as root)`,
};

const common = {
	hive: { type: "string" },
	"token-file": { type: "string" },
	"state-dir": { type: "string" },
	help: { type: "boolean", short: "h" },
	json: { type: "boolean" },
} as const;

/**
 * The token a local command gives the hive's API: --token-file, else
 * APIARY_HIVE_TOKEN, else APIARY_TOKEN, else the one the hive made in its state
 * dir (--state-dir, else the default one): whoever may read that file may use
 * the hive, and a worker (another user) may not.
 */
function clientToken(v: { "token-file"?: string; "state-dir"?: string }): string | null {
	if (v["token-file"] !== undefined) return loadToken(v["token-file"]);
	const env = process.env.APIARY_HIVE_TOKEN?.trim() || process.env.APIARY_TOKEN?.trim();
	if (env) return env;
	try {
		return readFileSync(join(v["state-dir"] ?? defaultStateDir("hive"), "api.token"), "utf8").trim() || null;
	} catch {
		// Not readable (not this user's hive, or none): the hive answers 401 and says how to give one.
		return null;
	}
}

const parse = <T extends Parameters<typeof parseFlags>[2]>(argv: string[], options: T, cmd: string) => parseFlags(`hive ${cmd}`, argv, options);
const flag = <T>(cmd: string, name: string, value: string | undefined, conv: (v: string) => T) => convertFlag(`hive ${cmd}`, name, value, conv);

const kv = (cmd: string, name: string, list: string[] | undefined) => keyValues(`hive ${cmd}`, name, list);

const hiveUrl = (v: string | undefined) => v ?? process.env.APIARY_HIVE ?? DEFAULT_HIVE;

/** Runs a hive command; returns the exit code. Output goes through `out`/`err` for tests. */
export async function main(argv: string[], out = (s: string) => process.stdout.write(s), err = (s: string) => process.stderr.write(s)): Promise<number> {
	const [cmd, ...rest] = argv;
	try {
		switch (cmd) {
			case undefined:
			case "help":
			case "--help":
			case "-h":
				out(`${HELP.main}\n`);
				return cmd === undefined ? 2 : 0;
			case "--version":
				out(`${VERSION}\n`);
				return 0;
			case "start":
				return await start(rest, out, err);
			case "spawn":
				return await spawnCmd(rest, out);
			case "ps":
				return await ps(rest, out);
			case "kill":
				return await kill(rest, out);
			case "logs":
				return await logs(rest, out);
			default:
				throw new UsageError(`hive: unknown command ${JSON.stringify(cmd)}\n\n${HELP.main}`);
		}
	} catch (e) {
		return exitCodeFor(`hive ${cmd}`, e, err);
	}
}

async function start(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
	const { values: v } = parse(
		argv,
		{
			...common,
			listen: { type: "string", default: "127.0.0.1:7071" },
			name: { type: "string" },
			interval: { type: "string", default: "1s" },
			"cgroup-driver": { type: "string", default: "auto" },
			"cgroup-root": { type: "string" },
			"state-dir": { type: "string" },
			"nvidia-smi": { type: "string", default: "nvidia-smi" },
			"gpu-interval": { type: "string" },
			grace: { type: "string", default: "10s" },
			"log-max": { type: "string", default: "64M" },
			"log-budget": { type: "string", default: "1G" },
			"stop-signal": { type: "string", default: "SIGTERM" },
			queen: { type: "string" },
			"queen-token-file": { type: "string" },
			ca: { type: "string" },
			"tls-cert": { type: "string" },
			"tls-key": { type: "string" },
			"insecure-plaintext": { type: "boolean" },
			"worker-user": { type: "string" },
			"allow-user": { type: "string", multiple: true },
			"allow-root-workers": { type: "boolean" },
			label: { type: "string", multiple: true },
			"no-remote-spawn": { type: "boolean" },
			kmsg: { type: "string", default: "/dev/kmsg" },
			"cordon-on-unhealthy-gpu": { type: "boolean" },
		},
		"start",
	);
	if (v.help) return help("start", out);
	const driver = v["cgroup-driver"]!;
	if (!["auto", "v2", "v1", "none"].includes(driver))
		throw new UsageError(`hive start: --cgroup-driver: expected auto, v2, v1 or none, got ${JSON.stringify(driver)}`);
	const name = flag("start", "name", v.name ?? defaultName(), (x) => checkId(x, "name"))!;
	const intervalMs = flag("start", "interval", v.interval, parseDuration)!;
	if (intervalMs < 50) throw new UsageError("hive start: --interval: must be at least 50ms");
	const gpuIntervalMs = flag("start", "gpu-interval", v["gpu-interval"], parseDuration);
	const graceMs = flag("start", "grace", v.grace, (x) => within(parseDuration(x), 0, MAX_GRACE_MS, formatDuration))!;
	const stopSignal = flag("start", "stop-signal", v["stop-signal"], stopSignalOf)!;
	const logMaxBytes = flag("start", "log-max", v["log-max"], (x) => within(parseSize(x), 64 * 1024, 2 ** 40, formatBytes))!;
	const logDirBudgetBytes = flag("start", "log-budget", v["log-budget"], (x) => within(parseSize(x), logMaxBytes, 2 ** 50, formatBytes))!;
	// No --token-file and no APIARY_TOKEN: the API's token is made in the state dir (the daemon's default).
	const token = loadToken(v["token-file"]) ?? undefined;
	const userName = (flagName: string, x: string) => {
		if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(x)) throw new UsageError(`hive start: --${flagName}: ${JSON.stringify(x)} is not a user name`);
		return x;
	};
	const workerUser = v["worker-user"] === undefined ? undefined : userName("worker-user", v["worker-user"]);
	const allowUsers = (v["allow-user"] ?? []).flatMap((x) => x.split(",")).map((x) => userName("allow-user", x));
	const log = (msg: string, extra?: object) => err(`${JSON.stringify({ time: new Date().toISOString(), msg, ...extra })}\n`);
	const { startHiveDaemon } = await import("./daemon.ts");
	const d = await startHiveDaemon({
		listen: v.listen!,
		name,
		intervalMs,
		cgroupDriver: driver as "auto",
		cgroupRoot: v["cgroup-root"],
		stateDir: v["state-dir"] ?? defaultStateDir("hive"),
		nvidiaSmi: v["nvidia-smi"]!,
		gpuIntervalMs,
		graceMs,
		stopSignal,
		logMaxBytes,
		logDirBudgetBytes,
		token,
		workerUser,
		allowUsers,
		allowRootWorkers: v["allow-root-workers"] === true,
		queenToken: v["queen-token-file"] === undefined ? undefined : loadToken(v["queen-token-file"]),
		queenCa: loadCa(v.ca),
		tls: tlsFiles("hive start", v["tls-cert"], v["tls-key"]),
		insecurePlaintext: v["insecure-plaintext"] === true,
		queen: queenList(v.queen ?? process.env.APIARY_QUEEN),
		labels: hiveLabels(v.label),
		remoteSpawn: v["no-remote-spawn"] !== true,
		kmsg: v.kmsg === "none" ? null : v.kmsg!,
		cordonOnUnhealthyGpu: v["cordon-on-unhealthy-gpu"] === true,
		log,
	});
	const info = d.hive.driver.info;
	const gpu = d.gpu.status();
	out(
		`hive ${name} listening on ${d.url}\n` +
			(v["insecure-plaintext"] && !v["tls-cert"] ? "  WARNING: --insecure-plaintext: no TLS off loopback, the API token crosses the network in clear\n" : "") +
			`  cgroup driver: ${info.name} (${info.enforced ? "limits enforced" : "limits NOT enforced"}) — ${info.reason}\n` +
			`  state dir: ${d.hive.stateDir}\n` +
			`  workers run as: ${d.workerUser ?? `this hive's own user (it is not root: it cannot run them as anyone else)`}\n` +
			`  API token: ${v["token-file"] ? v["token-file"] : process.env.APIARY_TOKEN ? "$APIARY_TOKEN" : `${d.hive.stateDir}/api.token`}\n` +
			`  GPUs: ${gpu.gpus.length > 0 ? gpu.gpus.length : gpu.state === "starting" ? "probing" : "none"}${gpu.message ? ` (${gpu.message})` : ""}\n` +
			`  workers re-adopted: ${d.hive.list().filter((w) => w.adopted && w.state === "running").length}\n` +
			`  queen: ${d.link ? queenList(v.queen ?? process.env.APIARY_QUEEN)!.join(", ") : "none (standalone)"}\n`,
	);
	await serveUntilSignal(d, log);
	return 0;
}

/** `--queen URL[,URL...]`: each an http(s) or ws(s) address. */
function queenList(text: string | undefined): string[] | undefined {
	if (text === undefined || text === "") return undefined;
	const urls = text.split(",").map((u) => u.trim());
	for (const u of urls) {
		let ok = false;
		try {
			ok = ["http:", "https:", "ws:", "wss:"].includes(new URL(u).protocol);
		} catch {
			// Not a URL at all: said below.
		}
		if (!ok) throw new UsageError(`hive start: --queen: ${JSON.stringify(u)} is not an http(s):// or ws(s):// address`);
	}
	return urls;
}

/** `--label k=v` on start: keys as label names, values up to 256 characters, at most 64. */
function hiveLabels(list: string[] | undefined): Record<string, string> {
	const labels = kv("start", "label", list) ?? {};
	for (const [k, val] of Object.entries(labels)) {
		if (!new RegExp(LABEL_KEY_PATTERN).test(k))
			throw new UsageError(`hive start: --label: ${JSON.stringify(k)} is not a label name (letters, digits, . _ / -)`);
		if (val.length > 256) throw new UsageError(`hive start: --label ${k}: the value is longer than 256 characters`);
	}
	if (Object.keys(labels).length > 64) throw new UsageError("hive start: --label: at most 64 labels");
	return labels;
}

function defaultName(): string {
	const h = hostname()
		.toLowerCase()
		.replace(/[^a-z0-9._-]/g, "-")
		.replace(/^[^a-z0-9]+/, "");
	return h.slice(0, 63) || "hive";
}

function help(cmd: string, out: (s: string) => void): number {
	out(`${HELP[cmd]}\n`);
	return 0;
}

async function spawnCmd(argv: string[], out: (s: string) => void): Promise<number> {
	const { own, command } = splitCommand(argv);
	const { values: v, positionals } = parse(own, { ...common, ...SPAWN_FLAGS, gpus: { type: "string" } }, "spawn");
	if (v.help) return help("spawn", out);
	const body = { ...spawnBodyOf("hive spawn", v, command, positionals), gpus: v.gpus === undefined ? undefined : v.gpus.split(",").filter(Boolean) };
	const w = await call<WorkerInfo>(hiveUrl(v.hive), "POST", "/v1/workers", body, clientToken(v));
	out(v.json ? `${JSON.stringify(w)}\n` : `${w.id}\n`);
	return 0;
}

async function ps(argv: string[], out: (s: string) => void): Promise<number> {
	const { values: v } = parse(argv, { ...common, all: { type: "boolean", short: "a" }, label: { type: "string" } }, "ps");
	if (v.help) return help("ps", out);
	const q = new URLSearchParams({ state: v.all ? "all" : "running" });
	if (v.label) q.set("label", v.label);
	const workers = await call<WorkerInfo[]>(hiveUrl(v.hive), "GET", `/v1/workers?${q}`, undefined, clientToken(v));
	if (v.json) {
		out(`${JSON.stringify(workers)}\n`);
		return 0;
	}
	out(formatWorkers(workers));
	return 0;
}

export function formatWorkers(workers: WorkerInfo[]): string {
	const rows = [["ID", "STATE", "PID", "CPU%", "MEM", "LIMIT", "PIDS", "UPTIME", "COMMAND"]];
	for (const w of workers) {
		const s = w.stats;
		const state =
			w.state === "exited"
				? `${w.exit?.reason ?? "exited"}${w.exit?.exitCode != null ? `(${w.exit.exitCode})` : w.exit?.signal ? `(${w.exit.signal})` : ""}`
				: w.adopted
					? "running*"
					: "running";
		rows.push([
			w.id,
			state,
			String(w.pid ?? "-"),
			s?.cpu.percent == null ? "-" : s.cpu.percent.toFixed(1),
			formatBytes(w.state === "exited" ? (w.exit?.peakWorkingSetBytes ?? w.exit?.peakMemoryBytes) : s?.memory.currentBytes),
			formatBytes(w.limits.memoryBytes),
			String(s?.pids.current ?? "-"),
			formatDuration(w.state === "exited" ? w.exit?.durationMs : s?.uptimeMs),
			shellJoin(w.command).slice(0, 60),
		]);
	}
	const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
	return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n")}\n`;
}

async function kill(argv: string[], out: (s: string) => void): Promise<number> {
	const { values: v, positionals } = parse(argv, common, "kill");
	if (v.help) return help("kill", out);
	if (positionals.length !== 1) throw new UsageError("hive kill: expected exactly one worker ID");
	const id = flag("kill", "id", positionals[0], (x) => checkId(x, "ID"))!;
	const w = await call<WorkerInfo>(hiveUrl(v.hive), "DELETE", `/v1/workers/${id}`, undefined, clientToken(v));
	const how = w.exit?.graceful === true ? ", gracefully" : w.exit?.graceful === false ? ", SIGKILLed when its grace period ran out" : "";
	out(
		v.json
			? `${JSON.stringify(w)}\n`
			: `${w.id} ${w.exit?.reason ?? w.state}${w.exit?.signal ? ` by ${w.exit.signal}` : ""} after ${formatDuration(w.exit?.durationMs)}${how}\n`,
	);
	return 0;
}

async function logs(argv: string[], out: (s: string) => void): Promise<number> {
	const { values: v, positionals } = parse(argv, { ...common, follow: { type: "boolean", short: "f" }, tail: { type: "string", short: "n" } }, "logs");
	if (v.help) return help("logs", out);
	if (positionals.length !== 1) throw new UsageError("hive logs: expected exactly one worker ID");
	const id = flag("logs", "id", positionals[0], (x) => checkId(x, "ID"))!;
	await printLogs(hiveUrl(v.hive), id, logsQuery("hive logs", v), clientToken(v), out);
	return 0;
}
