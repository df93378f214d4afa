import { ROLES, type TokenCreated, type TokenView } from "@apiary/protocol/roles";
import { parseDuration } from "@apiary/protocol/units";
import { checkId } from "@apiary/protocol/ids";
import { convertFlag, parseFlags, UsageError } from "@apiary/kit/cli";
import { call } from "@apiary/kit/client";
import { loadToken } from "@apiary/kit/listen";
import { table } from "./format.ts";

// `queen token create|list|revoke`: credentials with roles, made by an admin
// through the queen's API (POST/GET/DELETE /v1/tokens).

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
