import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { ClientError } from "./client.ts";

// What the hive and queen CLIs share: flag parsing whose errors name the
// command and flag, exit codes (0 ok, 1 failure, 2 bad usage), signals.

export class UsageError extends Error {
	override name = "UsageError";
}

export function parseFlags<T extends ParseArgsOptionsConfig>(prefix: string, argv: string[], options: T) {
	// `--pids -1` reads as `--pids=-1`, so a negative value gets the flag's own
	// error ("expected a positive number") rather than parseArgs' "ambiguous".
	const args: string[] = [];
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i]!;
		const next = argv[i + 1];
		if (a === "--") {
			args.push(...argv.slice(i));
			break;
		}
		const opt = a.startsWith("--") ? options[a.slice(2)] : undefined;
		if (opt?.type === "string" && next !== undefined && /^-\d/.test(next)) {
			args.push(`${a}=${next}`);
			i++;
		} else args.push(a);
	}
	try {
		return parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>({ args, options, allowPositionals: true, strict: true });
	} catch (err) {
		throw new UsageError(`${prefix}: ${(err as Error).message}`, { cause: err });
	}
}

/** Convert a flag's value; a failure is a usage error naming the flag. */
export function convertFlag<T>(prefix: string, name: string, value: string | undefined, conv: (v: string) => T): T | undefined {
	if (value === undefined) return undefined;
	try {
		return conv(value);
	} catch (err) {
		throw new UsageError(`${prefix}: --${name}: ${(err as Error).message}`, { cause: err });
	}
}

/** The exit code for an error, its message written for a person: 2 for bad usage, the daemon's 400 included. */
export function exitCodeFor(prefix: string, e: unknown, err: (s: string) => void): number {
	if (e instanceof UsageError) {
		err(`${e.message}\n`);
		return 2;
	}
	// The daemon refused the request (4xx: a field, an id it does not know, a credential, a reused key):
	// bad usage, with its own message. 5xx and an unreachable daemon are failures (1).
	if (e instanceof ClientError && e.status >= 400 && e.status < 500) {
		err(`${prefix}: ${e.message}\n`);
		return 2;
	}
	err(`${prefix}: ${(e as Error).message}\n`);
	return 1;
}

/** A daemon serves until SIGINT or SIGTERM, then closes; SIGHUP reloads its certificate and key (a renewal; open connections go on). */
export async function serveUntilSignal(d: { reloadTls(): void; close(): Promise<void> }, log: (msg: string, extra?: object) => void): Promise<void> {
	const reload = () => {
		try {
			d.reloadTls();
		} catch (e) {
			log("TLS reload failed; the previous certificate stays", { err: String(e) });
		}
	};
	process.on("SIGHUP", reload);
	await untilSignal();
	process.off("SIGHUP", reload);
	await d.close();
}

export function untilSignal(): Promise<void> {
	return new Promise((resolve) => {
		process.once("SIGINT", () => resolve());
		process.once("SIGTERM", () => resolve());
	});
}

/** Repeated K=V flags (--label, --env) as an object; a malformed one is a usage error. */
export function keyValues(prefix: string, name: string, list: string[] | undefined): Record<string, string> | undefined {
	if (!list) return undefined;
	const out: Record<string, string> = {};
	for (const item of list) {
		const i = item.indexOf("=");
		if (i <= 0) throw new UsageError(`${prefix}: --${name}: expected K=V, got ${JSON.stringify(item)}`);
		out[item.slice(0, i)] = item.slice(i + 1);
	}
	return out;
}

/** --tls-cert and --tls-key go together (`cmd`: "queen start", "hive start"). */
export function tlsFiles(cmd: string, cert: string | undefined, key: string | undefined): { certFile: string; keyFile: string } | undefined {
	if (cert === undefined && key === undefined) return undefined;
	if (cert === undefined || key === undefined) throw new UsageError(`${cmd}: --tls-cert and --tls-key go together`);
	return { certFile: cert, keyFile: key };
}
