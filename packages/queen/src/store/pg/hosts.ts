import pg from "pg";

// `--db` in libpq's multi-host form, which node-postgres does not read:
// `postgres://user@h1:p1,h2:p2/db?target_session_attrs=read-write`. The hosts
// are tried in order and the first that fits the session attributes is used
// (libpq's rule), so after a standby is promoted a queen that starts again
// (systemd restarts one that lost its database) finds the new primary by
// itself. A queen writes, so only `any`, `read-write` and `primary` make
// sense; the standby modes are refused.

export type SessionAttrs = "any" | "read-write" | "primary";
const WRITABLE: readonly string[] = ["any", "read-write", "primary"];
const LIBPQ_MODES = [...WRITABLE, "read-only", "standby", "prefer-standby"];

export interface DbTargets {
	/** One single-host URL per host, in the order given, without target_session_attrs (no server knows it). */
	urls: string[];
	/** Each host as written, for messages. */
	hosts: string[];
	attrs: SessionAttrs;
	/** libpq's connect_timeout (seconds), else 5 s per host. */
	connectTimeoutMs: number;
}

const URL_RE = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)([^?#]*)(?:\?([^#]*))?$/;

/** Splits a postgres:// URL into one URL per host; throws a message naming what is wrong. */
export function dbTargets(url: string): DbTargets {
	const m = URL_RE.exec(url);
	if (!m) throw new Error("--db: not a postgres:// or postgresql:// URL");
	const [, scheme, userinfo, hostList, path, query] = m as unknown as [string, string, string | undefined, string, string, string | undefined];
	const params = new URLSearchParams(query ?? "");
	const attrs = params.get("target_session_attrs") ?? "any";
	if (!LIBPQ_MODES.includes(attrs)) throw new Error(`--db: target_session_attrs=${attrs} is not one of libpq's (${LIBPQ_MODES.join(", ")})`);
	if (!WRITABLE.includes(attrs)) throw new Error(`--db: target_session_attrs=${attrs}: a queen writes to its database; use read-write (or primary, or any)`);
	params.delete("target_session_attrs");
	const timeout = params.get("connect_timeout");
	if (timeout !== null && !/^[0-9]{1,4}$/.test(timeout)) throw new Error(`--db: connect_timeout=${timeout} is not a whole number of seconds`);
	const rest = params.toString();
	const hosts = hostList === "" ? [""] : hostList.split(",");
	for (const h of hosts)
		if (hostList !== "" && !/^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(:[0-9]{1,5})?$/.test(h)) throw new Error(`--db: ${JSON.stringify(h)} is not HOST or HOST:PORT`);
	return {
		urls: hosts.map((h) => `${scheme}${userinfo !== undefined ? `${userinfo}@` : ""}${h}${path}${rest ? `?${rest}` : ""}`),
		hosts,
		attrs: attrs as SessionAttrs,
		connectTimeoutMs: timeout !== null && Number(timeout) > 0 ? Number(timeout) * 1000 : 5000,
	};
}

/** Whether a server in this state fits the attributes (libpq's definitions). */
export function fits(attrs: SessionAttrs, s: { inRecovery: boolean; readOnly: boolean }): boolean {
	if (attrs === "any") return true;
	if (attrs === "primary") return !s.inRecovery;
	return !s.inRecovery && !s.readOnly;
}

/** The URL of the first host that answers and fits; an error saying what each host was when none does. */
export async function pickHost(url: string, log?: (msg: string, f?: Record<string, unknown>) => void): Promise<string> {
	const t = dbTargets(url);
	if (t.urls.length === 1 && t.attrs === "any") return t.urls[0]!;
	const why: string[] = [];
	for (const [i, u] of t.urls.entries()) {
		const c = new pg.Client({ connectionString: u, connectionTimeoutMillis: t.connectTimeoutMs });
		c.on("error", () => {}); // a server going away while we ask: the query's rejection says it
		try {
			await c.connect();
			const { rows } = await c.query<{ in_recovery: boolean; read_only: boolean }>(
				"SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') = 'on' AS read_only",
			);
			const s = { inRecovery: rows[0]!.in_recovery, readOnly: rows[0]!.read_only };
			if (fits(t.attrs, s)) {
				if (t.urls.length > 1) log?.("postgres: using this host of --db", { host: t.hosts[i], of: t.hosts.length, attrs: t.attrs });
				return u;
			}
			why.push(`${t.hosts[i]}: ${s.inRecovery ? "in recovery (a standby)" : "read-only"}`);
		} catch (err) {
			why.push(`${t.hosts[i]}: ${(err as Error).message}`);
		} finally {
			await c.end().catch(() => {});
		}
	}
	throw new Error(`postgres: no host of --db is ${t.attrs === "any" ? "reachable" : t.attrs}: ${why.join("; ")}`);
}
