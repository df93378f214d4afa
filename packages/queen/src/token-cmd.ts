import { ROLES } from "@apiary/protocol/role-names";
import type { AuditRecord, TokenCreated, TokenView } from "@apiary/protocol/roles";
import { parseDuration } from "@apiary/protocol/units";
import { checkId } from "@apiary/protocol/ids";
import { convertFlag, parseFlags, UsageError } from "@apiary/kit/cli";
import { call } from "@apiary/kit/client";
import { loadToken } from "@apiary/kit/listen";
import { table } from "./format.ts";

// `queen token create|list|revoke`: credentials with roles, made by an admin
// through the queen's API (POST/GET/DELETE /v1/tokens); `queen audit`: the
// trail of who did, or was refused, what (GET /v1/audit).

export const TOKEN_HELP = (defaultQueen: string) => `Usage: queen token create --role ROLE [--hive ID] [--name NAME] [--ttl DURATION]
       queen token list [--json]
       queen token revoke ID

Roles: read (fleet, workers, GPUs, claims, events, metrics, recommendations),
schedule (read, plus claims, placements, stops, logs), admin (everything:
tokens too), hive (the hive socket alone; with --hive ID it speaks for that
hive only, without it it is an enrolment token: each hive that connects with
it gets a secret of its own, bound to its id).

create prints the secret alone on stdout, once: the queen keeps only its hash.
revoke ends it at once: its open streams and hive sockets are closed.

  --role ROLE        ${ROLES.join(" | ")}
  --hive ID          with --role hive: the hive it speaks for
  --name NAME        a name for people (who holds it)
  --ttl DURATION     it expires after this long, e.g. 30d (default: never)
  --json             list: print JSON
  --queen URL        queen (default $APIARY_QUEEN or ${defaultQueen})
  --token-file FILE  an admin token (default $APIARY_TOKEN)`;

const queenUrl = (v: string | undefined, d: string) => v ?? process.env.APIARY_QUEEN ?? d;

export async function token(argv: string[], defaultQueen: string, out: (s: string) => void): Promise<number> {
	const [sub, ...rest] = argv;
	const { values: v, positionals } = parseFlags(`queen token ${sub ?? ""}`.trim(), rest, {
		role: { type: "string" },
		hive: { type: "string" },
		name: { type: "string" },
		ttl: { type: "string" },
		json: { type: "boolean" },
		queen: { type: "string" },
		"token-file": { type: "string" },
	});
	const base = queenUrl(v.queen, defaultQueen);
	const auth = loadToken(v["token-file"]);
	if (sub === "create") {
		if (positionals.length > 0) throw new UsageError(`queen token create: unexpected argument ${JSON.stringify(positionals[0])}`);
		if (v.role === undefined) throw new UsageError(`queen token create: --role is required (${ROLES.join(", ")})`);
		if (!(ROLES as readonly string[]).includes(v.role))
			throw new UsageError(`queen token create: --role: expected one of ${ROLES.join(", ")}, got ${JSON.stringify(v.role)}`);
		if (v.hive !== undefined && v.role !== "hive") throw new UsageError("queen token create: --hive goes with --role hive");
		const ttl = convertFlag("queen token create", "ttl", v.ttl, parseDuration);
		const made = await call<TokenCreated>(
			base,
			"POST",
			"/v1/tokens",
			{
				role: v.role,
				hive: v.hive === undefined ? undefined : checkId(v.hive, "--hive"),
				name: v.name,
				ttlSeconds: ttl === undefined ? undefined : Math.max(1, Math.round(ttl / 1000)),
			},
			auth,
		);
		out(`${made.token}\n`);
		return 0;
	}
	if (sub === "list") {
		const list = await call<TokenView[]>(base, "GET", "/v1/tokens", undefined, auth);
		if (v.json) out(`${JSON.stringify(list)}\n`);
		else
			out(
				table([
					["ID", "ROLE", "HIVE", "NAME", "CREATED", "EXPIRES", "REVOKED"],
					...list.map((t) => [
						t.id,
						t.role,
						t.hive ?? "-",
						t.name ?? "-",
						t.createdAt.slice(0, 19),
						t.expiresAt?.slice(0, 19) ?? "never",
						t.revokedAt?.slice(0, 19) ?? "-",
					]),
				]),
			);
		return 0;
	}
	if (sub === "revoke") {
		if (positionals.length !== 1) throw new UsageError("queen token revoke: expected one token ID (t-…, from queen token list)");
		const t = await call<TokenView>(base, "DELETE", `/v1/tokens/${encodeURIComponent(positionals[0]!)}`, undefined, auth);
		out(`revoked ${t.id}\n`);
		return 0;
	}
	throw new UsageError(`queen token: expected create, list or revoke\n\n${TOKEN_HELP(defaultQueen)}`);
}

export const AUDIT_HELP = (defaultQueen: string) => `Usage: queen audit [-f] [--actor NAME|TOKEN-ID] [--op TEXT] [--since ID] [--json]

The audit trail: every change made through the queen and every refused
request (401/403, a hive that claimed another's id), with who, from where,
what, on what and how it went. Admin only.

  -f, --follow       keep printing new records as they come
  --actor A          only this actor (a token's name or id, --token-file, "hive ID")
  --op TEXT          only operations containing TEXT, e.g. "POST /v1/workers"
  --since ID         records after this id
  --json             one JSON record per line
  --queen URL        queen (default $APIARY_QUEEN or ${defaultQueen})
  --token-file FILE  an admin token (default $APIARY_TOKEN)`;

export async function audit(argv: string[], defaultQueen: string, out: (s: string) => void): Promise<number> {
	const { values: v, positionals } = parseFlags("queen audit", argv, {
		follow: { type: "boolean", short: "f" },
		actor: { type: "string" },
		op: { type: "string" },
		since: { type: "string" },
		json: { type: "boolean" },
		queen: { type: "string" },
		"token-file": { type: "string" },
	});
	if (positionals.length > 0) throw new UsageError(`queen audit: unexpected argument ${JSON.stringify(positionals[0])}`);
	let since = convertFlag("queen audit", "since", v.since, (x) => {
		if (!/^\d{1,15}$/.test(x)) throw new Error(`expected a record id, got ${JSON.stringify(x)}`);
		return Number(x);
	});
	const base = queenUrl(v.queen, defaultQueen);
	const auth = loadToken(v["token-file"]);
	let header = !v.json;
	for (;;) {
		const q = new URLSearchParams({ limit: "1000" });
		if (since !== undefined) q.set("since", String(since));
		if (v.actor) q.set("actor", v.actor);
		if (v.op) q.set("op", v.op);
		const records = await call<AuditRecord[]>(base, "GET", `/v1/audit?${q}`, undefined, auth);
		if (v.json) for (const r of records) out(`${JSON.stringify(r)}\n`);
		else if (records.length > 0 || header) {
			const rows = records.map((r) => [r.at.slice(0, 19).replace("T", " "), r.actor, r.role ?? "-", r.remote ?? "-", r.op, r.target ?? "-", String(r.outcome)]);
			const t = table([["TIME", "ACTOR", "ROLE", "FROM", "OPERATION", "TARGET", "OUTCOME"], ...rows]);
			out(header ? t : t.split("\n").slice(1).join("\n"));
			header = false;
		}
		if (records.length > 0) since = records.at(-1)!.id;
		if (!v.follow) return 0;
		if (records.length < 1000) await new Promise((r) => setTimeout(r, 1000));
	}
}
