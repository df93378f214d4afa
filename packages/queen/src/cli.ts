import type { GpuView, HiveView, QueenEvent, QueenWorkerView, RecommendationsAnswer, RunView } from "@apiary/protocol";
import { EVENT_TYPES } from "@apiary/protocol/event-types";
import { parseDuration, parseSize } from "@apiary/protocol/units";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { convertFlag, exitCodeFor, parseFlags, serveUntilSignal, tlsFiles, UsageError, untilSignal } from "@apiary/kit/cli";
import { call, callWithHeaders, ClientError, unreachable } from "@apiary/kit/client";
import { loadCa, loadToken } from "@apiary/kit/listen";
import { defaultStateDir } from "@apiary/kit/state-dir";
import { readVersion } from "@apiary/kit/version";
import { formatEvent, formatGpus, formatHives, formatWorkers } from "./format.ts";
import { KILL_HELP, kill, LOGS_HELP, logs, RUN_HELP, run } from "./run-cmd.ts";
import { AUDIT_HELP, audit, TOKEN_HELP, token } from "./token-cmd.ts";
import { formatRuns, RUNS_HELP } from "./shards-cmd.ts";
import { CORDON_HELP, cordon, DRAIN_HELP, UNCORDON_HELP } from "./cordon-cmd.ts";
import { GPU_HELP, gpu } from "./gpu-cmd.ts";

// Client commands load only what they use: the daemon (fastify, ws, the
// socket schemas), node:sqlite and the EventSource client are imported by
// the commands that need them.
const VERSION = readVersion(new URL("../package.json", import.meta.url));
const defaultDbPath = () => join(defaultStateDir("queen"), "queen.db");

const DEFAULT_QUEEN = "http://127.0.0.1:7070";

const HELP: Record<string, string> = {
	main: `queen ${VERSION} — the fleet's registry, event stream and GPU scheduler queries

Usage: queen <command> [options]

Commands:
  start      run the queen daemon
  tail       follow the event stream
  gpus       list GPUs (--free for the free pool)
  hives      list hives
  cordon     no new placements on a hive (admin)
  drain      cordon a hive and stop its workers at a deadline (admin)
  uncordon   a cordoned or drained hive takes placements again (admin)
  gpu clear  a GPU's hive forgets its latched health causes (admin)
  workers    list workers
  advise     the limits each profile and suite should have, from their runs
  run        place a worker, stream its output, exit with its code (like srun)
  runs       list sharded runs (queen run --shards)
  kill       stop a worker through the queen
  logs       a worker's output, relayed from its hive
  token      make, list and revoke credentials with roles (admin)
  audit      who did, or was refused, what (admin)
  certs      make a fleet's TLS certificates (a CA, the queen's, each hive's)
  backup     copy the queen's SQLite file safely while it runs
  migrate    copy a queen's SQLite file into an empty PostgreSQL database

Clients talk to ${DEFAULT_QUEEN} unless --queen URL or APIARY_QUEEN says otherwise.`,
	start: `Usage: queen start [options]

  --listen HOST:PORT      API and hive socket address (default 127.0.0.1:7070);
                          not loopback needs a token
  --db PATH|URL           SQLite file (default $APIARY_STATE_DIR/queen.db, /var/lib/apiary/queen/queen.db
                          as root, else ~/.local/state/apiary/queen/queen.db), or a PostgreSQL
                          database, postgres://USER@HOST:PORT/DB, which several queens may share;
                          libpq's multi-host form finds the primary after a failover:
                          postgres://USER@H1:P1,H2:P2/DB?target_session_attrs=read-write
  --stale-after DURATION  a hive silent this long is stale (default 3s)
  --evict-after DURATION  a hive silent this long is lost and its workers evicted (default 90s)
  --max-heartbeats-per-second N
                          past this many, hives are told to send heartbeats less often
                          (every hives/N s; spawns and exits never wait); stale-after and
                          evict-after stretch with it; the queen lowers it while its event
                          loop is over 75 % busy with them (default 1000)
  --busy-memory SIZE      a GPU using this much memory is not free (default 1G)
  --advise-labels LIST    worker labels that, with the profile, group runs for
                          right-sizing (default suite)
  --token-file FILE       token for the hive socket and every route but /healthz
                          (default $APIARY_TOKEN)
  --keep-exited N         exited workers kept in memory per hive (default 10000); older
                          ones are still found in the database
  --keep-exited-for DUR   …and for at most this long (default 7d)
  --db-keep-for DUR       exited workers and exit records kept in the database (default 30d)
  --tls-cert FILE         serve HTTPS and WSS with this certificate (PEM chain); SIGHUP reloads it
  --tls-key FILE          …and this key
  --tls-client-ca FILE    hives may show a client certificate signed by this CA instead of a
                          token: its CN is the one hive id it speaks for (asked, not required)
  --insecure-plaintext    listen off loopback without TLS all the same (tokens in clear)
  --ca FILE               several queens: the CA the others' certificates are checked against
                          (default $APIARY_CA, else the system's)
  --advertise URL         several queens: where the others reach this one to relay
                          commands for its hives (default the --listen address; the
                          host name when that is 0.0.0.0 or ::)`,
	tail: `Usage: queen tail [options]

  --types LIST       event types, * wildcards: worker.*,hive.lost
  --hive ID          only this hive's events
  --worker ID        only this worker's events
  --since ID         replay from after this event id instead of starting with a snapshot
  --coalesce DUR     each worker's stats at most once per DUR (100ms-10m): its latest sample,
                     at the window's end; lifecycle events are never held (default: every sample)
  --json             one JSON event per line
  --queen URL        queen (default $APIARY_QUEEN or ${DEFAULT_QUEEN})
  --token-file FILE  bearer token (default $APIARY_TOKEN)

Reconnects by itself and resumes where it left off (Last-Event-ID).`,
	gpus: `Usage: queen gpus [options]

  --free             only free GPUs (hive ready and not cordoned, healthy or degraded, not held,
                     not claimed, memory idle)
  --min-memory SIZE  at least this much free memory, e.g. 16G
  --hive ID          only this hive
  --name TEXT        name contains TEXT, e.g. A100
  --json             print JSON
  --queen URL        queen (default $APIARY_QUEEN or ${DEFAULT_QUEEN})
  --token-file FILE  bearer token (default $APIARY_TOKEN)`,
	hives: `Usage: queen hives [--json] [--queen URL] [--token-file FILE]`,
	backup: `Usage: queen backup --db PATH FILE

  --db PATH          the queen's SQLite file (default as for queen start)

Copies the database through SQLite's online backup, consistent even while the
queen is writing. Restore by starting a queen with --db FILE.`,
	migrate: `Usage: queen migrate --from PATH --to postgres://USER@HOST:PORT/DB

  --from PATH        the queen's SQLite file (default as for queen start)
  --to URL           an empty PostgreSQL database (postgres:// or postgresql://)

Applies the PostgreSQL schema's migrations, then copies hives, workers, exit
records, GPUs, claims, right-sizing runs and the event log (ids kept, so a
Last-Event-ID resumes on the new queens) in one transaction. Refuses a target
that already holds a fleet, writing nothing. Stop the queen first: changes it
makes after the copy's snapshot are not copied.`,
	advise: `Usage: queen advise [options]

  --profile P        only runs of this profile ("none": runs without one)
  --label k=v        only runs with this label
  --json             print JSON (GET /v1/recommendations)
  --queen URL        queen (default $APIARY_QUEEN or ${DEFAULT_QUEEN})
  --token-file FILE  bearer token (default $APIARY_TOKEN)

Per group of runs (profile and the queen's --advise-labels) and per resource
(memory, cpu, timeout, gpu memory): current limit → recommended, confidence,
OOM / timeout / throttled rates, and a backtest over the group's runs.
Recommendations only: nothing applies them. See docs/right-sizing.md.`,
	run: RUN_HELP(DEFAULT_QUEEN),
	kill: KILL_HELP(DEFAULT_QUEEN),
	logs: LOGS_HELP(DEFAULT_QUEEN),
	token: TOKEN_HELP(DEFAULT_QUEEN),
	cordon: CORDON_HELP(DEFAULT_QUEEN),
	drain: DRAIN_HELP(DEFAULT_QUEEN),
	uncordon: UNCORDON_HELP(DEFAULT_QUEEN),
	gpu: GPU_HELP(DEFAULT_QUEEN),
	runs: RUNS_HELP(DEFAULT_QUEEN),
	audit: AUDIT_HELP(DEFAULT_QUEEN),
	certs: `Usage: queen certs init --dir DIR [--san NAME]... [--hive ID]... [--days N]

Makes (or adds to) a fleet's certificates in DIR, with openssl:
  ca.crt, ca.key          the fleet's CA (made once; kept when DIR has one)
  queen.crt, queen.key    the queen's server certificate, for every --san
                          (made when --san is given or none exists yet;
                          default names: this host's name, localhost, 127.0.0.1)
  hives/ID.crt, ID.key    per --hive: a certificate whose CN is the hive id,
                          for the hive's client certificate (queen start
                          --tls-client-ca DIR/ca.crt) and its own API's TLS

Keys are written 0600, certificates 0644. Then:
  queen start --tls-cert DIR/queen.crt --tls-key DIR/queen.key --tls-client-ca DIR/ca.crt
  hive start --queen https://QUEEN:7070 --ca DIR/ca.crt --tls-cert ID.crt --tls-key ID.key
  APIARY_CA=DIR/ca.crt queen hives --queen https://QUEEN:7070

  --dir DIR      where the files go (made 0700 if new)
  --san NAME     a DNS name or IP address the queen is reached at (repeatable)
  --hive ID      a hive to make a certificate for (repeatable)
  --days N       leaf certificates' validity (default 397; the CA's: 3650)`,
	workers: `Usage: queen workers [options]

  --hive ID          only this hive
  --state S          running | exited | evicted | all (default running)
  --json             print JSON
  --queen URL        queen (default $APIARY_QUEEN or ${DEFAULT_QUEEN})
  --token-file FILE  bearer token (default $APIARY_TOKEN)`,
};

function parse<T extends Parameters<typeof parseFlags>[2]>(argv: string[], options: T, cmd: string) {
	const r = parseFlags(`queen ${cmd}`, argv, options);
	if (r.positionals.length > 0) throw new UsageError(`queen ${cmd}: unexpected argument ${JSON.stringify(r.positionals[0])}`);
	return r;
}
const flag = <T>(cmd: string, name: string, value: string | undefined, conv: (v: string) => T) => convertFlag(`queen ${cmd}`, name, value, conv);

const common = { queen: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" }, "token-file": { type: "string" } } as const;
const queenUrl = (v: string | undefined) => v ?? process.env.APIARY_QUEEN ?? DEFAULT_QUEEN;
const TOKEN_HINT = " (give it with --token-file FILE or APIARY_TOKEN)";

export async function main(argv: string[], out = (s: string) => process.stdout.write(s), err = (s: string) => process.stderr.write(s)): Promise<number> {
	const [cmd, ...rest] = argv;
	try {
		if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
			out(`${HELP.main}\n`);
			return cmd === undefined ? 2 : 0;
		}
		if (cmd === "--version") {
			out(`${VERSION}\n`);
			return 0;
		}
		if (!HELP[cmd] || cmd === "main") throw new UsageError(`queen: unknown command ${JSON.stringify(cmd)}\n\n${HELP.main}`);
		// Only the command's own flags: `queen run -- tool --help` runs the tool.
		const own = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
		if (own.includes("--help") || own.includes("-h")) {
			out(`${HELP[cmd]}\n`);
			return 0;
		}
		switch (cmd) {
			case "start":
				return await start(rest, out, err);
			case "tail":
				return await tail(rest, out, err);
			case "gpus": {
				const { values: v } = parse(
					rest,
					{ ...common, free: { type: "boolean" }, "min-memory": { type: "string" }, hive: { type: "string" }, name: { type: "string" } },
					"gpus",
				);
				const q = new URLSearchParams();
				if (v.free) q.set("free", "true");
				const min = flag("gpus", "min-memory", v["min-memory"], parseSize);
				if (min !== undefined) q.set("minMemoryMiB", String(Math.ceil(min / 2 ** 20)));
				if (v.hive) q.set("hive", v.hive);
				if (v.name) q.set("name", v.name);
				const gpus = await call<GpuView[]>(queenUrl(v.queen), "GET", `/v1/gpus?${q}`, undefined, loadToken(v["token-file"]));
				out(v.json ? `${JSON.stringify(gpus)}\n` : formatGpus(gpus));
				return 0;
			}
			case "backup": {
				const { values: v, positionals } = parseFlags("queen backup", rest, { db: { type: "string" } });
				if (positionals.length !== 1) throw new UsageError("queen backup: expected one FILE to write the copy to");
				const src = v.db ?? defaultDbPath();
				if (/^postgres(ql)?:\/\//.test(src)) throw new UsageError("queen backup: --db: a PostgreSQL database is backed up with pg_dump (docs/operations.md)");
				if (!existsSync(src)) throw new Error(`no database at ${src}`);
				const { backup, DatabaseSync } = await import("node:sqlite");
				const db = new DatabaseSync(src, { readOnly: true });
				try {
					const pages = await backup(db, positionals[0]!);
					out(`backed up ${src} to ${positionals[0]} (${pages} pages)\n`);
				} finally {
					db.close();
				}
				return 0;
			}
			case "migrate": {
				const { values: v } = parse(rest, { from: { type: "string" }, to: { type: "string" } }, "migrate");
				if (v.to === undefined) throw new UsageError("queen migrate: --to is required: the PostgreSQL database to copy into (postgres://…)");
				if (!/^postgres(ql)?:\/\//.test(v.to)) throw new UsageError(`queen migrate: --to: ${JSON.stringify(v.to)} is not a postgres:// or postgresql:// URL`);
				const from = v.from ?? defaultDbPath();
				if (!existsSync(from)) throw new UsageError(`queen migrate: --from: no database at ${from}`);
				const [{ default: pg }, { copyFromSqlite, TargetNotEmpty }, { dbTargets, pickHost }] = await Promise.all([
					import("pg"),
					import("./store/pg/from-sqlite.ts"),
					import("./store/pg/hosts.ts"),
				]);
				try {
					dbTargets(v.to);
				} catch (e) {
					throw new UsageError(`queen migrate: ${(e as Error).message.replace("--db", "--to")}`);
				}
				const client = new pg.Client({ connectionString: await pickHost(v.to) });
				await client.connect();
				try {
					const c = await copyFromSqlite(from, client);
					out(
						`copied ${from} into ${redactUrl(v.to)}: ${c.hives} hives, ${c.workers} workers, ${c.exits} exit records, ${c.gpus} GPUs, ${c.claims} claims, ${c.runs} runs, ${c.tokens} tokens, ${c.events} events (last id ${c.lastEventId})\n`,
					);
				} catch (e) {
					if (e instanceof TargetNotEmpty) throw new UsageError(`queen migrate: --to ${redactUrl(v.to)}: ${e.message}`);
					throw e;
				} finally {
					await client.end();
				}
				return 0;
			}
			case "hives": {
				const { values: v } = parse(rest, common, "hives");
				const hives = await call<HiveView[]>(queenUrl(v.queen), "GET", "/v1/hives", undefined, loadToken(v["token-file"]));
				out(v.json ? `${JSON.stringify(hives)}\n` : formatHives(hives));
				return 0;
			}
			case "cordon":
			case "drain":
			case "uncordon":
				return await cordon(cmd, rest, DEFAULT_QUEEN, out);
			case "gpu":
				return await gpu(rest, DEFAULT_QUEEN, out);
			case "runs": {
				const { values: v } = parse(rest, { ...common, state: { type: "string" } }, "runs");
				const q = v.state ? `?state=${encodeURIComponent(v.state)}` : "";
				const runs = await call<RunView[]>(queenUrl(v.queen), "GET", `/v1/runs${q}`, undefined, loadToken(v["token-file"]));
				out(v.json ? `${JSON.stringify(runs)}\n` : formatRuns(runs));
				return 0;
			}
			case "run":
				return await run(rest, DEFAULT_QUEEN, out, err);
			case "kill":
				return await kill(rest, DEFAULT_QUEEN, out);
			case "logs":
				return await logs(rest, DEFAULT_QUEEN, out);
			case "token":
				return await token(rest, DEFAULT_QUEEN, out);
			case "audit":
				return await audit(rest, DEFAULT_QUEEN, out);
			case "certs":
				return await (await import("./certs-cmd.ts")).certs(rest, out);
			case "advise": {
				const { values: v } = parse(rest, { ...common, profile: { type: "string" }, label: { type: "string" } }, "advise");
				const q = new URLSearchParams();
				if (v.profile) q.set("profile", v.profile);
				if (v.label !== undefined) {
					if (!/^[^=]+=/.test(v.label)) throw new UsageError(`queen advise: --label ${JSON.stringify(v.label)} is not k=v`);
					q.set("label", v.label);
				}
				const a = await call<RecommendationsAnswer>(
					queenUrl(v.queen),
					"GET",
					`/v1/recommendations${q.size ? `?${q}` : ""}`,
					undefined,
					loadToken(v["token-file"]),
				);
				const { formatAdvice } = await import("./advise/format.ts");
				out(v.json ? `${JSON.stringify(a)}\n` : formatAdvice(a, q.size > 0));
				return 0;
			}
			case "workers": {
				const { values: v } = parse(rest, { ...common, hive: { type: "string" }, state: { type: "string" } }, "workers");
				const states = ["running", "exited", "evicted", "all"];
				const state = flag("workers", "state", v.state, (x) => {
					if (!states.includes(x)) throw new Error(`expected one of ${states.join(", ")}, got ${JSON.stringify(x)}`);
					return x;
				});
				const q = new URLSearchParams({ state: state ?? "running" });
				if (v.hive) q.set("hive", v.hive);
				// Every page: the answer is paged (x-next-cursor), the command lists all.
				const ws: QueenWorkerView[] = [];
				for (let cursor: string | null = null; ; ) {
					if (cursor) q.set("cursor", cursor);
					const page = await callWithHeaders<QueenWorkerView[]>(queenUrl(v.queen), "GET", `/v1/workers?${q}`, loadToken(v["token-file"]));
					ws.push(...page.body);
					cursor = page.headers["x-next-cursor"] ?? null;
					if (!cursor) break;
				}
				out(v.json ? `${JSON.stringify(ws)}\n` : formatWorkers(ws));
				return 0;
			}
		}
		return 2;
	} catch (e) {
		return exitCodeFor(`queen ${cmd}`, e, err);
	}
}

async function start(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
	const { values: v } = parse(
		argv,
		{
			...common,
			listen: { type: "string", default: "127.0.0.1:7070" },
			db: { type: "string" },
			"stale-after": { type: "string", default: "3s" },
			"evict-after": { type: "string", default: "90s" },
			"max-heartbeats-per-second": { type: "string", default: "1000" },
			"busy-memory": { type: "string", default: "1G" },
			"advise-labels": { type: "string", default: "suite" },
			advertise: { type: "string" },
			"tls-cert": { type: "string" },
			"tls-key": { type: "string" },
			"tls-client-ca": { type: "string" },
			"insecure-plaintext": { type: "boolean" },
			ca: { type: "string" },
			"keep-exited": { type: "string", default: "10000" },
			"keep-exited-for": { type: "string", default: "7d" },
			"db-keep-for": { type: "string", default: "30d" },
		},
		"start",
	);
	const staleAfterMs = flag("start", "stale-after", v["stale-after"], parseDuration)!;
	const evictAfterMs = flag("start", "evict-after", v["evict-after"], parseDuration)!;
	if (evictAfterMs <= staleAfterMs) throw new UsageError("queen start: --evict-after must be longer than --stale-after");
	const busy = flag("start", "busy-memory", v["busy-memory"], parseSize)!;
	const log = (msg: string, extra?: object) => err(`${JSON.stringify({ time: new Date().toISOString(), msg, ...extra })}\n`);
	const db = v.db ?? defaultDbPath();
	const { startQueenDaemon, isPostgresUrl } = await import("./daemon.ts");
	if (isPostgresUrl(db)) {
		const { dbTargets } = await import("./store/pg/hosts.ts");
		try {
			dbTargets(db);
		} catch (e) {
			throw new UsageError(`queen start: ${(e as Error).message}`);
		}
	}
	const d = await startQueenDaemon({
		listen: v.listen!,
		db,
		staleAfterMs,
		evictAfterMs,
		maxHeartbeatsPerSecond: flag("start", "max-heartbeats-per-second", v["max-heartbeats-per-second"], (x) => {
			if (!/^\d{1,7}$/.test(x) || Number(x) < 1) throw new Error(`expected a whole number of heartbeats a second, at least 1, got ${JSON.stringify(x)}`);
			return Number(x);
		}),
		busyMemoryMiB: Math.ceil(busy / 2 ** 20),
		adviseLabels: adviseLabels(v["advise-labels"]!),
		token: loadToken(v["token-file"]),
		tls: clientCa(tlsFiles("queen start", v["tls-cert"], v["tls-key"]), v["tls-client-ca"]),
		insecurePlaintext: v["insecure-plaintext"] === true,
		ca: loadCa(v.ca),
		keepExited: flag("start", "keep-exited", v["keep-exited"], (x) => {
			if (!/^\d{1,7}$/.test(x)) throw new Error(`expected a number of workers, got ${JSON.stringify(x)}`);
			return Number(x);
		}),
		keepExitedMs: flag("start", "keep-exited-for", v["keep-exited-for"], parseDuration),
		dbKeepMs: flag("start", "db-keep-for", v["db-keep-for"], parseDuration),
		advertise: flag("start", "advertise", v.advertise, (x) => {
			const u = new URL(x);
			if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("expected an http:// or https:// URL");
			return u.origin;
		}),
		log,
	});
	out(
		`queen listening on ${d.url}\n${v["insecure-plaintext"] && !v["tls-cert"] ? "  WARNING: --insecure-plaintext: no TLS off loopback, tokens cross the network in clear\n" : ""}${d.openToAll ? "  no credential configured: every local user, and every worker on this host, may use this queen (docs/security.md)\n" : ""}  hives connect to ${d.url.replace("http", "ws")}/v1/hives/connect\n  events: ${d.url}/v1/events\n  db: ${/^postgres(ql)?:\/\//.test(db) ? redactUrl(db) : db}\n  hives known: ${d.registry.hiveCount()}\n`,
	);
	await serveUntilSignal(d, log);
	return 0;
}

/** --tls-client-ca needs TLS of the queen's own. */
function clientCa<T extends object>(tls: T | undefined, file: string | undefined): (T & { clientCaFile?: string }) | undefined {
	if (file === undefined) return tls;
	if (!tls) throw new UsageError("queen start: --tls-client-ca needs --tls-cert and --tls-key");
	return { ...tls, clientCaFile: file };
}

async function tail(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
	const { values: v } = parse(
		argv,
		{ ...common, types: { type: "string" }, hive: { type: "string" }, worker: { type: "string" }, since: { type: "string" }, coalesce: { type: "string" } },
		"tail",
	);
	const coalesceMs = flag("tail", "coalesce", v.coalesce, (x) => {
		const ms = Math.round(parseDuration(x));
		if (ms < 100 || ms > 600_000) throw new Error("must be between 100ms and 10m");
		return ms;
	});
	const q = new URLSearchParams();
	if (v.types) q.set("types", v.types);
	if (v.hive) q.set("hive", v.hive);
	if (v.worker) q.set("worker", v.worker);
	if (v.since) q.set("since", v.since);
	if (coalesceMs !== undefined) q.set("coalesceMs", String(coalesceMs));
	const url = `${queenUrl(v.queen)}/v1/events${q.size ? `?${q}` : ""}`;
	const colour = !v.json && process.stdout.isTTY === true;
	// fetch (and so EventSource) takes no per-request CA: APIARY_CA becomes this process's trusted set, as --ca is elsewhere.
	const ca = url.startsWith("https:") ? loadCa(undefined) : undefined;
	if (ca) (await import("node:tls")).setDefaultCACertificates([ca.toString("utf8")]);
	// Check the request once so bad filters fail fast with the queen's message.
	const token = loadToken(v["token-file"]);
	const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
	// As the stream itself is asked for (an Accept the route does not serve would be a 406, not the filter's 400).
	const probe = await fetch(url, { headers: { accept: "text/event-stream", ...auth } }).catch((e) => {
		throw unreachable(queenUrl(v.queen), e);
	});
	if (!probe.ok) {
		const why = await probe
			.json()
			.then((b) => (b as { message?: string }).message)
			.catch(() => undefined);
		const message = `${why ?? `${probe.status} ${probe.statusText}`}${probe.status === 401 ? TOKEN_HINT : ""}`;
		// A 4xx is exit 2 with the queen's message (exitCodeFor), as for every client command.
		throw new ClientError(probe.status, message);
	}
	await probe.body?.cancel();
	const { EventSource } = await import("eventsource");
	// The token goes in the Authorization header (never the URL): eventsource lets its fetch add it.
	const es = new EventSource(url, { fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...auth } }) });
	const show = (ev: MessageEvent) => {
		const e = JSON.parse(ev.data) as QueenEvent;
		out(v.json ? `${JSON.stringify(e)}\n` : formatEvent(e, colour));
	};
	for (const t of EVENT_TYPES) es.addEventListener(t, show);
	// The stream refused for good (a 4xx after a reconnect: a revoked token, say) ends the command; nothing else would.
	const refused = new Promise<string>((resolve) =>
		es.addEventListener("error", (e) => {
			if (es.readyState === EventSource.CONNECTING) err("queen tail: disconnected; reconnecting\n");
			else if (es.readyState === EventSource.CLOSED) resolve((e as { message?: string }).message ?? "the queen closed the stream");
		}),
	);
	const why = await Promise.race([untilSignal().then(() => null), refused]);
	es.close();
	if (why === null) return 0;
	err(`queen tail: ${why}\n`);
	return 1;
}

/** --advise-labels: a comma-separated list of label names (the spawn API's label pattern), at most 8. */
function adviseLabels(text: string): string[] {
	const names = text === "" ? [] : text.split(",");
	const bad = names.find((n) => !/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/.test(n));
	if (bad !== undefined) throw new UsageError(`queen start: --advise-labels: ${JSON.stringify(bad)} is not a label name`);
	if (names.length > 8) throw new UsageError("queen start: --advise-labels takes at most 8 labels");
	return names;
}

/** A database URL as printed: without its password (a regex: libpq's multi-host form is no WHATWG URL). */
function redactUrl(url: string): string {
	return url.replace(/^(postgres(?:ql)?:\/\/[^:@/?#]*):[^@/?#]*@/, "$1:***@");
}
