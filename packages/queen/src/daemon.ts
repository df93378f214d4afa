import { DEFAULT_MAX_HEARTBEATS_PER_SECOND, PaceGovernor } from "./heartbeat-pace.ts";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { type Clock, systemClock } from "@apiary/kit/clock";
import { isLoopback, parseListen } from "@apiary/kit/listen";
import { readVersion } from "@apiary/kit/version";
import type { FastifyInstance } from "fastify";
import { buildQueenApp } from "./app.ts";
import { EventLog } from "./events.ts";
import { Registry, SWEEP_LOCK } from "./registry.ts";
import { remoteReads } from "./remote-reads.ts";
import { type QueenMetrics, queenMetrics } from "./metrics.ts";
import { Drainer } from "./drainer.ts";
import { forwardRequest } from "./queen-forward.ts";
import { Runs } from "./runs/runner.ts";
import { Placer } from "./placement/placer.ts";
import { Auditor } from "./auth/audit.ts";
import { Credentials } from "./auth/credentials.ts";
import { HiveCommands } from "./hive-commands.ts";
import { HiveSocketServer } from "./socket.ts";
import { PgStore } from "./store/pg/store.ts";
import { SqliteStore } from "./store/sqlite.ts";

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "[::]";

/** `--db postgres://…` or `postgresql://…`: the PostgreSQL store; anything else is a SQLite file. */
export const isPostgresUrl = (db: string) => /^postgres(ql)?:\/\//.test(db);

export const VERSION = readVersion(new URL("../package.json", import.meta.url));
/** How often the heartbeat target is reconsidered: long enough to see paced hives answer, short enough to catch a surge. */
const GOVERN_EVERY_MS = 2000;

export interface QueenDaemonOptions {
	listen: string;
	db: string;
	staleAfterMs: number;
	evictAfterMs: number;
	token: string | null;
	busyMemoryMiB?: number;
	/** Labels that, with the profile, group runs for right-sizing (default: suite). */
	adviseLabels?: string[];
	keepaliveMs?: number;
	queueLimit?: number;
	/** Heartbeats this queen takes a second at most: past it, its hives are told to send less often (default 1000). */
	maxHeartbeatsPerSecond?: number;
	maxMessageBytes?: number;
	clock?: Clock;
	log?: (msg: string, extra?: object) => void;
	/** PostgreSQL: how long failing commits are retried, and what then (default: exit 1). */
	dbRetryMs?: number;
	onDbFatal?: (err: Error) => void;
	/** Exited workers kept in memory per hive (default 10,000), and for how long (default 7 days). */
	keepExited?: number;
	keepExitedMs?: number;
	/** …and in the database (default 30 days). */
	dbKeepMs?: number;
	/**
	 * HTTPS and WSS on the one port: PEM files, read at start and again by
	 * reloadTls() (SIGHUP). `clientCaFile`: hives may show a client certificate
	 * signed by it, whose CN is their id, instead of a token (hive role, that id only).
	 */
	tls?: { certFile: string; keyFile: string; clientCaFile?: string };
	/** Listen off loopback without TLS all the same (tokens then cross the network in clear). */
	insecurePlaintext?: boolean;
	/** The CA other queens' certificates are checked against when this queen relays to them (default: the system's). */
	ca?: Buffer;
	/** Several queens: the URL the others reach this one at (default: the listen address; the host name for 0.0.0.0 or ::). */
	advertise?: string;
	/** Called when an SSE subscriber is closed for lagging. */
	onLag?: (dropped: number) => void;
}

export interface QueenDaemon {
	app: FastifyInstance;
	registry: Registry;
	sockets: HiveSocketServer;
	placer: Placer;
	metrics: QueenMetrics;
	url: string;
	/** No credential configured at all (no --token-file, no token made): loopback only, open to every local user. */
	readonly openToAll: boolean;
	/** Reads the certificate and key again: new connections get them, open ones go on (SIGHUP). */
	reloadTls(): void;
	close(): Promise<void>;
}

export async function startQueenDaemon(o: QueenDaemonOptions): Promise<QueenDaemon> {
	const { host, port } = parseListen(o.listen);
	if (!isLoopback(host) && !o.token) {
		throw new Error(`refusing to listen on ${host} without a token: pass --token-file FILE or set APIARY_TOKEN (loopback needs none)`);
	}
	if (!isLoopback(host) && !o.tls && !o.insecurePlaintext) {
		throw new Error(
			`refusing to listen on ${host} without TLS: tokens would cross the network in clear; pass --tls-cert FILE --tls-key FILE, or --insecure-plaintext to accept that`,
		);
	}
	const readTls = () =>
		o.tls
			? {
					cert: readFileSync(o.tls.certFile),
					key: readFileSync(o.tls.keyFile),
					// Asked for, never required: CLIs and dashboards come with tokens and no certificate.
					...(o.tls.clientCaFile ? { ca: readFileSync(o.tls.clientCaFile), requestCert: true, rejectUnauthorized: false } : {}),
				}
			: undefined;
	const tls = readTls();
	const log = o.log ?? (() => {});
	const queenId = randomUUID();
	const store = isPostgresUrl(o.db) ? await PgStore.open(o.db, { log, retryMs: o.dbRetryMs, onFatal: o.onDbFatal, queenId }) : new SqliteStore(o.db);
	const durable = store instanceof PgStore ? () => store.durable() : undefined;
	const events = new EventLog(store);
	const livenessEveryMs = Math.max(50, Math.min(1000, Math.floor(o.staleAfterMs / 4)));
	// The event loop's busy share since the last liveness check: the queen's own lag (registry.ts, forgiveStall).
	let elu = performance.eventLoopUtilization();
	const busy = () => {
		const now = performance.eventLoopUtilization();
		const d = performance.eventLoopUtilization(now, elu);
		elu = now;
		return d.utilization;
	};
	const registry = new Registry(store, events, {
		staleAfterMs: o.staleAfterMs,
		evictAfterMs: o.evictAfterMs,
		busyMemoryMiB: o.busyMemoryMiB ?? 1024,
		adviseLabels: o.adviseLabels,
		clock: o.clock,
		log,
		livenessEveryMs,
		busy,
	});
	const credentials = new Credentials(store, { fileToken: o.token, clock: o.clock ?? systemClock, log, certificates: tls?.requestCert === true });
	const auditor = new Auditor(store, o.clock ?? systemClock, log);
	/**
	 * Paced heartbeats applied since the governor last looked, and the ms
	 * spent applying them. A connection's first heartbeat is not counted:
	 * the hive sends it on connect whatever it was told, so a join storm of
	 * them is not something a slower pace would relieve (counted, the
	 * 10,000-hive join cut every queen's target to its floor, hives told a
	 * minute, and kept it there).
	 */
	const intake = { count: 0, ms: 0 };
	const sockets = new HiveSocketServer({
		registry,
		credentials,
		auditor,
		clientCerts: tls?.requestCert === true,
		maxPayload: o.maxMessageBytes ?? 4 << 20,
		staleAfterMs: o.staleAfterMs,
		maxHeartbeatsPerSecond: o.maxHeartbeatsPerSecond ?? DEFAULT_MAX_HEARTBEATS_PER_SECOND,
		log,
		onHeartbeat: (ms, paced) => {
			metrics.heartbeat(ms / 1000);
			if (!paced) return;
			intake.count++;
			intake.ms += ms;
		},
		durable,
		...(store instanceof PgStore ? { catchUp: () => store.catchUp() } : {}),
	});
	const metrics = queenMetrics(
		registry,
		() => sockets.connections,
		store instanceof PgStore ? store : undefined,
		() => sockets.heartbeatTarget,
		sockets.intake,
	);
	const commands = new HiveCommands(sockets, registry, store instanceof PgStore ? store : null, o.token, o.ca);
	const placer = new Placer(registry, commands);
	const runs = new Runs(registry, placer, commands, {
		log,
		...(store instanceof PgStore
			? {
					runQueenUrl: (id: string) => store.runQueenUrl(id),
					forward: (base: string, method: string, path: string, auth: string | undefined) =>
						forwardRequest(base, method, path, auth ?? (o.token ? `Bearer ${o.token}` : null), { ca: o.ca }),
				}
			: {}),
	});
	const drainer = new Drainer(registry, commands, { isLocal: (id) => sockets.isConnected(id), log });
	drainer.start();
	const app = await buildQueenApp({
		https: tls,
		insecurePlaintext: !isLoopback(host) && !tls,
		registry,
		placer,
		runs,
		sockets,
		commands,
		credentials,
		auditor,
		version: VERSION,
		keepaliveMs: o.keepaliveMs ?? 15_000,
		queueLimit: o.queueLimit ?? 10_000,
		metrics: metrics.registry,
		durable,
		onLag: (n) => {
			metrics.lagged(n);
			o.onLag?.(n);
		},
	});
	const hiveSockets = sockets;
	app.server.on("upgrade", (req, socket, head) => hiveSockets.handleUpgrade(req, socket, head));
	/** A start that failed after this point closes what it opened, so the process exits (and systemd starts it again). */
	const abandon = async (timers: (NodeJS.Timeout | null)[]) => {
		credentials.close();
		for (const t of timers) if (t) clearInterval(t);
		runs.close();
		placer.close();
		drainer.close();
		hiveSockets.close();
		await app.close().catch(() => {});
		await store.close();
	};
	let sweep: NodeJS.Timeout | null = null;
	if (store instanceof PgStore) {
		// Other queens' commits: their hives' rows replace what this queen holds of them, then every event is published.
		try {
			await store.startTail(events.lastId, async (batch) => {
				const { whole, some } = remoteReads(batch, queenId, (h) => registry.hasHive(h));
				const rows = whole.length > 0 ? await store.loadHives(whole) : { hives: [], workers: [], gpus: [] };
				const workers = some.size > 0 ? await store.loadWorkers([...some].flatMap(([hiveId, ids]) => [...ids].map((id) => ({ hiveId, id })))) : [];
				registry.applyRemote(rows, batch, queenId, { hives: some, workers });
				events.committed(batch.map(({ origin: _o, ...e }) => e));
			});
		} catch (err) {
			await abandon([]);
			throw err;
		}
		let sweeps = 0;
		sweep = setInterval(() => {
			// Other queens' hives' samples, written with their renewals.
			store
				.samplesSince()
				.then((rows) => registry.applySamples(rows, queenId))
				.catch((err) => log("reading other queens' samples failed", { err: String(err) }));
			store
				.withLock(
					SWEEP_LOCK,
					async () => {
						registry.sweep(await store.livenessAges());
						// The log keeps its newest million events, as on SQLite.
						if (++sweeps % 60 === 0) await store.pruneEvents(1_000_000);
					},
					true,
				)
				.catch((err) => log("liveness sweep failed", { err: String(err) }));
		}, 1000);
		sweep.unref();
	}
	// Exited workers leave memory past their retention (at start too: a restart loads what the database kept)
	// and the database past its longer one.
	const keep = o.keepExited ?? 10_000;
	const keepMs = o.keepExitedMs ?? 7 * 24 * 3_600_000;
	const dbKeepMs = o.dbKeepMs ?? 30 * 24 * 3_600_000;
	const prune = () => {
		try {
			const n = registry.pruneExited(keep, keepMs);
			if (n > 0) log("exited workers past their retention left memory", { workers: n });
		} catch (err) {
			log("pruning exited workers failed", { err: String(err) });
		}
	};
	const pruneDb = () => {
		const before = new Date(Date.now() - dbKeepMs).toISOString();
		try {
			store.tx(() => {
				store.workers.prune(before);
				store.exits.prune(before);
				// The audit trail: the newest million records, none older than 90 days.
				store.audit.prune(1_000_000, new Date(Date.now() - 90 * 86_400_000).toISOString());
			});
		} catch (err) {
			log("pruning the database's old workers failed", { err: String(err) });
		}
	};
	prune();
	pruneDb();
	const pruning = setInterval(prune, 10_000);
	pruning.unref();
	const pruningDb = setInterval(pruneDb, 600_000);
	pruningDb.unref();
	// The heartbeat target follows what the queen measures of itself (heartbeat-pace.ts, PaceGovernor).
	const governor = new PaceGovernor({ max: o.maxHeartbeatsPerSecond ?? DEFAULT_MAX_HEARTBEATS_PER_SECOND });
	let governed = { elu: performance.eventLoopUtilization(), at: performance.now() };
	const governing = setInterval(() => {
		const now = { elu: performance.eventLoopUtilization(), at: performance.now() };
		const seconds = (now.at - governed.at) / 1000;
		const busy = performance.eventLoopUtilization(now.elu, governed.elu).utilization;
		governed = now;
		const waiting = hiveSockets.intake;
		const pacedShare = waiting.waiting === 0 ? 0 : waiting.marked / waiting.waiting;
		const target = governor.observe(busy, intake.count / seconds, intake.ms / 1000 / seconds, waiting.oldestWaitMs(), pacedShare);
		intake.count = 0;
		intake.ms = 0;
		if (target !== hiveSockets.heartbeatTarget) {
			log("heartbeat target changed", { perSecond: Math.round(target), busy: Math.round(busy * 100) / 100 });
			hiveSockets.setHeartbeatTarget(target);
		}
		hiveSockets.retell();
	}, GOVERN_EVERY_MS);
	governing.unref();
	const liveness = setInterval(() => {
		try {
			registry.checkLiveness();
		} catch (err) {
			log("liveness check failed", { err: String(err) });
		}
	}, livenessEveryMs);
	liveness.unref();
	try {
		await app.listen({ host, port });
	} catch (err) {
		await abandon([liveness, pruning, pruningDb, sweep, governing]);
		throw err;
	}
	const addr = app.server.address();
	const boundPort = typeof addr === "object" && addr ? addr.port : port;
	const url = `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${boundPort}`;
	// Where the other queens forward commands for this queen's hives: --advertise, else the address it listens on.
	if (store instanceof PgStore)
		try {
			await store.advertise(o.advertise ?? (isWildcard(host) ? `http://${hostname()}:${boundPort}` : url));
		} catch (err) {
			await abandon([liveness, pruning, pruningDb, sweep, governing]);
			throw err;
		}
	// Unfinished sharded runs: waiting shards placed again, running ones followed. On PostgreSQL, those of a
	// queen that is gone (another one's are its own), looked for every 2 s: a queen is gone 3 s after its last renewal.
	const adopt = () => void runs.adopt().catch((err) => log("carrying on with sharded runs failed", { err: String(err) }));
	adopt();
	const adopting = store instanceof PgStore ? setInterval(adopt, 2000) : null;
	adopting?.unref();
	return {
		app,
		registry,
		sockets: hiveSockets,
		metrics,
		url,
		get openToAll() {
			return !credentials.authOn;
		},
		reloadTls() {
			const next = readTls();
			if (!next) return;
			(app.server as unknown as { setSecureContext(o: { cert: Buffer; key: Buffer; ca?: Buffer }): void }).setSecureContext(next);
			log("TLS certificate reloaded", { cert: o.tls!.certFile });
		},
		placer,
		async close() {
			credentials.close();
			clearInterval(liveness);
			clearInterval(governing);
			clearInterval(pruning);
			clearInterval(pruningDb);
			if (sweep) clearInterval(sweep);
			if (adopting) clearInterval(adopting);
			runs.close();
			placer.close();
			drainer.close();
			hiveSockets.close();
			await app.close();
			events.close();
			await store.close();
		},
	};
}
