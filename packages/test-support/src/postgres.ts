import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

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

export async function startPostgres(): Promise<Postgres> {
	const bin = postgresBin();
	const root = process.getuid?.() === 0;
	// /tmp is reachable by every user; the data dir itself is the server's own.
	const dir = mkdtempSync("/tmp/apiary-test-pg-");
	chmodSync(dir, 0o755);
	const data = join(dir, "data");
	const as = (cmd: string[]) => {
		if (!root) return execFileSync(cmd[0]!, cmd.slice(1), { stdio: "pipe" });
		const quoted = cmd.map((c) => `'${c.replaceAll("'", "'\\''")}'`).join(" ");
		return execFileSync("su", ["postgres", "-s", "/bin/sh", "-c", quoted], { stdio: "pipe" });
	};
	if (root) execFileSync("chown", ["postgres", dir]);
	const port = await freePort();
	try {
		as([join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
		as([
			join(bin, "pg_ctl"),
			"-D",
			data,
			"-l",
			join(dir, "log"),
			"-w",
			"-t",
			"60",
			"-o",
			`-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
			"start",
		]);
	} catch (err) {
		rmSync(dir, { recursive: true, force: true });
		throw new Error(`starting PostgreSQL in ${dir} failed: ${(err as { stderr?: Buffer }).stderr?.toString() ?? String(err)}`, { cause: err });
	}
	return {
		url: `postgres://postgres@127.0.0.1:${port}/postgres`,
		port,
		async stop() {
			spawnSync(
				"sh",
				[
					"-c",
					root
						? `su postgres -s /bin/sh -c '${join(bin, "pg_ctl")} -D ${data} -m immediate -w stop'`
						: `${join(bin, "pg_ctl")} -D ${data} -m immediate -w stop`,
				],
				{
					stdio: "ignore",
				},
			);
			rmSync(dir, { recursive: true, force: true });
		},
	};
}
