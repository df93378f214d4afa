import { Readable } from "node:stream";
import { createServer, type HttpsFiles } from "@apiary/kit/server";
import { ErrorBody, HiveHealth, HiveWorkersQuery, type HostFacts, IdParams, LogsQuery, Snapshot, SpawnBody, Type, WorkerInfo } from "@apiary/protocol";
import type { FastifyInstance } from "fastify";
import { type Hive, HiveError } from "../hive.ts";
import { logStream } from "../log-stream.ts";
import { shown } from "../shown.ts";
import { hiveMetrics } from "../metrics.ts";

export interface HiveAppOptions {
	hive: Hive;
	host: HostFacts | null;
	token: string | null;
	logger?: boolean;
	version: string;
	/** HTTPS: PEM certificate chain and key. */
	https?: HttpsFiles;
}

/**
 * The hive's local HTTP API. Every route's request and answer are declared
 * once in @apiary/protocol (api.ts): validation, types and OpenAPI come from
 * there; unknown fields are errors, not silently dropped.
 */
export async function buildHiveApp(o: HiveAppOptions): Promise<FastifyInstance> {
	const app = await createServer({
		bodyLimit: 1 << 20,
		token: o.token,
		https: o.https,
		logger: o.logger,
		openapi: { title: "Apiary hive", version: o.version, description: "The hive's local API: spawn, list, kill and read workers; the current snapshot." },
	});
	const { hive } = o;

	app.get("/healthz", { schema: { response: { 200: HiveHealth } } }, async () => ({
		ok: true,
		hiveId: hive.hiveId,
		instanceId: hive.instanceId,
		version: o.version,
		driver: hive.driver.info,
		host: o.host,
		storage: hive.storage(),
	}));

	const metrics = hiveMetrics(hive);
	app.get("/metrics", async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));

	app.get("/v1/snapshot", { schema: { response: { 200: Snapshot } } }, async () => {
		const snap = hive.snapshot() ?? (await hive.tick());
		return { ...snap, workers: snap.workers.map(shown) };
	});

	app.post("/v1/workers", { schema: { body: SpawnBody, response: { 201: WorkerInfo } } }, async (req, reply) =>
		reply.code(201).send(shown(await hive.spawn(req.body))),
	);

	app.get("/v1/workers", { schema: { querystring: HiveWorkersQuery, response: { 200: Type.Array(WorkerInfo) } } }, async (req) => {
		const state = req.query.state ?? "all";
		const label = req.query.label;
		const i = label?.indexOf("=") ?? -1;
		const [lk, lv] = label ? [label.slice(0, i), label.slice(i + 1)] : [null, null];
		return hive
			.list()
			.filter((w) => (state === "all" || w.state === state) && (lk === null || w.labels[lk] === lv))
			.map(shown);
	});

	app.get("/v1/workers/:id", { schema: { params: IdParams, response: { 200: WorkerInfo, 404: ErrorBody } } }, async (req) => {
		const w = hive.get(req.params.id);
		if (!w) throw new HiveError(404, `no worker ${req.params.id}`);
		return shown(w);
	});

	app.delete("/v1/workers/:id", { schema: { params: IdParams, response: { 200: WorkerInfo, 404: ErrorBody } } }, async (req) =>
		shown(await hive.kill(req.params.id)),
	);

	app.get("/v1/workers/:id/logs", { schema: { params: IdParams, querystring: LogsQuery } }, async (req, reply) => {
		const { id } = req.params;
		const q = req.query;
		if (!hive.get(id)) throw new HiveError(404, `no worker ${id}`);
		const follow = q.follow === "true" || q.follow === "1";
		const ac = new AbortController();
		reply.raw.on("close", () => ac.abort()); // the response's close: the request's fires once it is read
		reply.type("text/plain; charset=utf-8");
		return reply.send(Readable.from(logStream(hive, id, q, follow, ac.signal)));
	});

	return app as unknown as FastifyInstance;
}
