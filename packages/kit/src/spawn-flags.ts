import { checkId } from "@apiary/protocol/ids";
import { MAX_GRACE_MS, MAX_MEMORY_BYTES, MAX_TIMEOUT_MS, MIN_MEMORY_BYTES, STOP_SIGNALS } from "@apiary/protocol/limits";
import { PROFILE_NAMES } from "@apiary/protocol/profiles";
import { formatBytes, formatDuration, parseDuration, parseSize } from "@apiary/protocol/units";
import { convertFlag, keyValues, UsageError } from "./cli.ts";

// The worker flags `hive spawn` and `queen run` share: one parser, one help
// text, so the two commands cannot drift apart. Light imports only (client
// commands load no schema library).

export const SPAWN_FLAGS = {
	profile: { type: "string" },
	cpu: { type: "string" },
	memory: { type: "string" },
	pids: { type: "string" },
	timeout: { type: "string" },
	label: { type: "string", multiple: true },
	env: { type: "string", multiple: true },
	id: { type: "string" },
	cwd: { type: "string" },
	grace: { type: "string" },
	"stop-signal": { type: "string" },
	user: { type: "string" },
} as const;

export const SPAWN_FLAGS_HELP = `  --profile P        ${PROFILE_NAMES.join(" | ")}
  --cpu CORES        CPU limit in cores, e.g. 0.5
  --memory SIZE      memory limit, e.g. 512M, 1G
  --pids N           process count limit
  --timeout DURATION stop the worker after this long, e.g. 90s, 10m
  --label K=V        label (repeatable)
  --env K=V          extra environment variable (repeatable)
  --id ID            worker id (default: generated)
  --cwd DIR          working directory (default: this directory)
  --grace DURATION   on a stop or timeout, wait this long after the stop signal before SIGKILL
                     (default: the hive's --grace, 10s)
  --stop-signal SIG  ${STOP_SIGNALS.join(" | ")} (default: the hive's, SIGTERM)
  --user USER        run as this user (a root hive's default: its --worker-user; others only
                     from its --allow-user list)`;

type Values = { [K in keyof typeof SPAWN_FLAGS]?: (typeof SPAWN_FLAGS)[K] extends { multiple: true } ? string[] : string };

/** `[options] -- CMD [ARG...]`: the command's own flags and the worker's argv. */
export function splitCommand(argv: string[]): { own: string[]; command: string[] } {
	const dd = argv.indexOf("--");
	return { own: dd < 0 ? argv : argv.slice(0, dd), command: dd < 0 ? [] : argv.slice(dd + 1) };
}

/** A stop signal by name (SIGTERM or TERM). */
export function stopSignalOf(x: string): (typeof STOP_SIGNALS)[number] {
	const name = x.toUpperCase().startsWith("SIG") ? x.toUpperCase() : `SIG${x.toUpperCase()}`;
	const known = STOP_SIGNALS.find((s) => s === name);
	if (!known) throw new Error(`expected one of ${STOP_SIGNALS.join(", ")}, got ${JSON.stringify(x)}`);
	return known;
}

export function within(n: number, min: number, max: number, show: (n: number) => string): number {
	if (n < min || n > max) throw new Error(`must be between ${show(min)} and ${show(max)}`);
	return n;
}

/** The spawn body (GPUs aside) from the shared flags; a bad one is a usage error naming it. */
export function spawnBodyOf(cmd: string, v: Values, command: string[], positionals: string[]) {
	const flag = <T>(name: string, value: string | undefined, conv: (x: string) => T) => convertFlag(cmd, name, value, conv);
	if (positionals.length > 0 && command.length === 0) throw new UsageError(`${cmd}: put the command after "--": ${cmd} [options] -- ${positionals.join(" ")}`);
	if (command.length === 0) throw new UsageError(`${cmd}: no command given: ${cmd} [options] -- CMD [ARG...]`);
	if (v.profile !== undefined && !(PROFILE_NAMES as readonly string[]).includes(v.profile))
		throw new UsageError(`${cmd}: --profile: unknown profile ${JSON.stringify(v.profile)} (known: ${PROFILE_NAMES.join(", ")})`);
	const positive = (x: string) => {
		const n = Number(x);
		if (!(n > 0) || !Number.isFinite(n)) throw new Error(`expected a positive number, got ${JSON.stringify(x)}`);
		return n;
	};
	return {
		id: flag("id", v.id, (x) => checkId(x, "id")),
		command,
		profile: v.profile as (typeof PROFILE_NAMES)[number] | undefined,
		cpu: flag("cpu", v.cpu, positive),
		memoryBytes: flag("memory", v.memory, (x) => within(parseSize(x), MIN_MEMORY_BYTES, MAX_MEMORY_BYTES, formatBytes)),
		pids: flag("pids", v.pids, (x) => {
			const n = positive(x);
			if (!Number.isInteger(n)) throw new Error(`expected a whole number, got ${JSON.stringify(x)}`);
			return n;
		}),
		timeoutMs: flag("timeout", v.timeout, (x) => within(parseDuration(x), 1, MAX_TIMEOUT_MS, (n) => formatDuration(n))),
		labels: keyValues(cmd, "label", v.label),
		env: keyValues(cmd, "env", v.env),
		cwd: v.cwd ?? process.cwd(),
		graceMs: flag("grace", v.grace, (x) => within(parseDuration(x), 0, MAX_GRACE_MS, formatDuration)),
		stopSignal: flag("stop-signal", v["stop-signal"], stopSignalOf),
		user: flag("user", v.user, (x) => {
			if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(x)) throw new Error(`${JSON.stringify(x)} is not a user name`);
			return x;
		}),
	};
}
