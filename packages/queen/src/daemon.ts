import type { Clock } from "@apiary/kit/clock";
import { isLoopback, parseListen } from "@apiary/kit/listen";
import { readVersion } from "@apiary/kit/version";
import type { FastifyInstance } from "fastify";
import { buildQueenApp } from "./app.ts";
import { EventLog } from "./events.ts";
import { Registry } from "./registry.ts";
import { type QueenMetrics, queenMetrics } from "./metrics.ts";
import { Placer } from "./placement/placer.ts";
import { HiveSocketServer } from "./socket.ts";
import { PgStore } from "./store/pg/store.ts";
import { SqliteStore } from "./store/sqlite.ts";

/** `--db postgres://…` or `postgresql://…`: the PostgreSQL store; anything else is a SQLite file. */
export const isPostgresUrl = (db: string) => /^postgres(ql)?:\/\//.test(db);

export const VERSION = readVersion(new URL("../package.json", import.meta.url));

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
	maxMessageBytes?: number;
	clock?: Clock;
	log?: (msg: string, extra?: object) => void;
	/** PostgreSQL: how long failing commits are retried, and what then (default: exit 1). */
	dbRetryMs?: number;
	onDbFatal?: (err: Error) => void;
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
	close(): Promise<void>;
}

export async function startQueenDaemon(o: QueenDaemonOptions): Promise<QueenDaemon> {
	const { host, port } = parseListen(o.listen);
	if (!isLoopback(host) && !o.token) {
		throw new Error(`refusing to listen on ${host} without a token: pass --token-file FILE or set APIARY_TOKEN (loopback needs none)`);
	}
	const log = o.log ?? (() => {});
	const store = isPostgresUrl(o.db) ? await PgStore.open(o.db, { log, retryMs: o.dbRetryMs, onFatal: o.onDbFatal }) : new SqliteStore(o.db);
	const durable = store instanceof PgStore ? () => store.durable() : undefined;
	const events = new EventLog(store);
	const registry = new Registry(store, events, {
		staleAfterMs: o.staleAfterMs,
		evictAfterMs: o.evictAfterMs,
		busyMemoryMiB: o.busyMemoryMiB ?? 1024,
		adviseLabels: o.adviseLabels,
		clock: o.clock,
	});
	const sockets = new HiveSocketServer({
		registry,
		token: o.token,
		maxPayload: o.maxMessageBytes ?? 4 << 20,
		staleAfterMs: o.staleAfterMs,
		log,
		onHeartbeat: (ms) => metrics.heartbeat(ms / 1000),
		durable,
	});
	const metrics = queenMetrics(registry, () => sockets.connections, store instanceof PgStore ? store : undefined);
	const placer = new Placer(registry, sockets);
	const app = await buildQueenApp({
		registry,
		placer,
		sockets,
		token: o.token,
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
	const liveness = setInterval(
		() => {
			try {
				registry.checkLiveness();
			} catch (err) {
				log("liveness check failed", { err: String(err) });
			}
		},
		Math.max(50, Math.min(1000, Math.floor(o.staleAfterMs / 4))),
	);
	liveness.unref();
	try {
		await app.listen({ host, port });
	} catch (err) {
		clearInterval(liveness);
		placer.close();
		hiveSockets.close();
		await store.close();
		throw err;
	}
	const addr = app.server.address();
	const boundPort = typeof addr === "object" && addr ? addr.port : port;
	return {
		app,
		registry,
		sockets: hiveSockets,
		metrics,
		url: `http://${host.includes(":") ? `[${host}]` : host}:${boundPort}`,
		placer,
		async close() {
			clearInterval(liveness);
			placer.close();
			hiveSockets.close();
			await app.close();
			events.close();
			await store.close();
		},
	};
}
