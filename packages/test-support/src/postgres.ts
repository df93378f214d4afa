import { execFileSync, spawnSync } from "node:child_process";
import { appendFileSync, chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import pg from "pg";

// A real PostgreSQL server for a test: initdb and pg_ctl from Debian's
// postgresql package in a temp dir, on a free loopback port, stopped and
// removed afterwards. initdb refuses to run as root, so as root the server
// runs as the postgres user, in a directory that user can reach.

export interface Postgres {
	/** postgres://postgres@127.0.0.1:PORT/postgres */
	url: string;
	port: number;
	stop(): Promise<void>;
}

/** The newest installed server's bin dir; a missing server fails naming the package (npm test installs it as root). */
export function postgresBin(): string {
	const root = "/usr/lib/postgresql";
	const versions = existsSync(root)
		? readdirSync(root)
				.filter((v) => existsSync(join(root, v, "bin", "initdb")))
				.sort((a, b) => Number(b) - Number(a))
		: [];
	if (versions.length === 0)
		throw new Error(
			"initdb not found under /usr/lib/postgresql: install the Debian package postgresql (sudo apt-get install --no-install-recommends postgresql); npm test run as root installs it (scripts/setup.sh)",
		);
	return join(root, versions[0]!, "bin");
}

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const port = (s.address() as { port: number }).port;
			s.close(() => resolve(port));
		});
	});
}

/** Runs a server tool as the server's user (root: postgres, through su), under `wrap` (`ip netns exec NS`) if given. */
function runner(wrap: string[] = []): (cmd: string[]) => Buffer {
	const root = process.getuid?.() === 0;
	return (cmd) => {
		const full = root ? ["su", "postgres", "-s", "/bin/sh", "-c", cmd.map((c) => `'${c.replaceAll("'", "'\\''")}'`).join(" ")] : cmd;
		const [first, ...rest] = [...wrap, ...full];
		return execFileSync(first!, rest, { stdio: "pipe" });
	};
}

/** A temp dir reachable by every user (/tmp), owned by the server's user. */
function serverDir(): string {
	const dir = mkdtempSync("/tmp/apiary-test-pg-");
	chmodSync(dir, 0o755);
	if (process.getuid?.() === 0) execFileSync("chown", ["postgres", dir]);
	return dir;
}

const startServer = (bin: string, as: (cmd: string[]) => Buffer, dir: string, data: string, port: number, log: string, host = "127.0.0.1") =>
	as([
		join(bin, "pg_ctl"),
		"-D",
		data,
		"-l",
		join(dir, log),
		"-w",
		"-t",
		"60",
		"-o",
		`-p ${port} -k ${dir} -c listen_addresses=${host} -c fsync=off -c max_connections=100`,
		"start",
	]);

/** Stops a server at once (as a crash would: no checkpoint), whatever its state. */
const killServer = (bin: string, data: string) =>
	spawnSync(
		"sh",
		[
			"-c",
			process.getuid?.() === 0
				? `su postgres -s /bin/sh -c '${join(bin, "pg_ctl")} -D ${data} -m immediate -w stop'`
				: `${join(bin, "pg_ctl")} -D ${data} -m immediate -w stop`,
		],
		{ stdio: "ignore" },
	);

/** `host`: the address it listens on (default 127.0.0.1); `wrap`: run it in a network namespace (`ip netns exec NS`). */
export async function startPostgres(o: { host?: string; wrap?: string[] } = {}): Promise<Postgres> {
	const bin = postgresBin();
	const as = runner(o.wrap);
	const dir = serverDir();
	const data = join(dir, "data");
	const port = await freePort();
	try {
		as([join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
		// Off loopback (a test's own network): its /24 may connect, as loopback may by initdb's default.
		if (o.host) appendFileSync(join(data, "pg_hba.conf"), `host all all ${o.host.replace(/\.\d+$/, ".0")}/24 trust\n`);
		startServer(bin, as, dir, data, port, "log", o.host);
	} catch (err) {
		rmSync(dir, { recursive: true, force: true });
		throw new Error(`starting PostgreSQL in ${dir} failed: ${(err as { stderr?: Buffer }).stderr?.toString() ?? String(err)}`, { cause: err });
	}
	return {
		url: `postgres://postgres@${o.host ?? "127.0.0.1"}:${port}/postgres`,
		port,
		async stop() {
			killServer(bin, data);
			rmSync(dir, { recursive: true, force: true });
		},
	};
}

export interface PostgresPair {
	primaryPort: number;
	standbyPort: number;
	/** Kills the primary at once (pg_ctl stop -m immediate: no shutdown checkpoint, clients cut). */
	killPrimary(): void;
	/** pg_ctl promote on the standby, waiting until it accepts writes. */
	promote(): void;
	stop(): Promise<void>;
}

/**
 * A primary and a streaming standby that is synchronous (synchronous_standby_names
 * = '*', synchronous_commit on): a commit the primary acknowledged is on the
 * standby, so a failover loses nothing acknowledged.
 */
export async function startPostgresPair(): Promise<PostgresPair> {
	const bin = postgresBin();
	const as = runner();
	const dir = serverDir();
	const primary = join(dir, "primary");
	const standby = join(dir, "standby");
	const [primaryPort, standbyPort] = [await freePort(), await freePort()];
	const stop = async () => {
		killServer(bin, standby);
		killServer(bin, primary);
		rmSync(dir, { recursive: true, force: true });
	};
	try {
		as([join(bin, "initdb"), "-D", primary, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
		startServer(bin, as, dir, primary, primaryPort, "primary.log");
		// -R writes standby.signal and primary_conninfo; -X stream: the WAL the copy needs comes with it.
		as([join(bin, "pg_basebackup"), "-D", standby, "-h", "127.0.0.1", "-p", String(primaryPort), "-U", "postgres", "-R", "-X", "stream"]);
		startServer(bin, as, dir, standby, standbyPort, "standby.log");
		const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${primaryPort}/postgres` });
		await c.connect();
		try {
			for (let i = 0; ; i++) {
				const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'");
				if (rows[0].n === 1) break;
				if (i > 300) throw new Error("the standby never streamed");
				await new Promise((r) => setTimeout(r, 100));
			}
			// Synchronous only once the standby streams: before, every commit would wait for it.
			await c.query("ALTER SYSTEM SET synchronous_standby_names = '*'");
			await c.query("SELECT pg_reload_conf()");
		} finally {
			await c.end();
		}
	} catch (err) {
		await stop();
		throw new Error(`starting a PostgreSQL pair in ${dir} failed: ${(err as { stderr?: Buffer }).stderr?.toString() ?? String(err)}`, { cause: err });
	}
	return {
		primaryPort,
		standbyPort,
		killPrimary: () => killServer(bin, primary),
		promote: () => {
			as([join(bin, "pg_ctl"), "-D", standby, "-w", "-t", "60", "promote"]);
		},
		stop,
	};
}
