import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { HostFacts } from "@apiary/protocol";
import Fastify, { type FastifyInstance } from "fastify";
import { type Hive, HiveError, type SpawnRequest } from "../hive.ts";
import { hiveMetrics } from "../metrics.ts";
import { requireToken } from "@apiary/kit/auth";
import { registerOpenApi } from "@apiary/kit/openapi";
import { schemaError } from "@apiary/kit/server";
import { idParam, listQuery, logsQuery, spawnBody } from "./schemas.ts";

export interface HiveAppOptions {
	hive: Hive;
	host: HostFacts | null;
	token: string | null;
	logger?: boolean;
	version: string;
}

/** The hive's local HTTP API. Every route has a schema; unknown fields are errors, not silently dropped. */
export async function buildHiveApp(o: HiveAppOptions): Promise<FastifyInstance> {
	const app = Fastify({
		logger: o.logger ?? false,
		bodyLimit: 1 << 20,
		ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
		schemaErrorFormatter: schemaError,
	});
	const { hive } = o;
	requireToken(app, o.token);
	await registerOpenApi(app, { title: "Apiary hive", version: o.version, description: "The hive's local API: spawn, list, kill and read workers; the current snapshot." });
	app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, _req, reply) => {
		if (err instanceof HiveError) return reply.code(err.status).send({ statusCode: err.status, error: "Bad Request", message: err.message });
		const status = err.statusCode ?? 500;
		if (status >= 500) app.log.error(err);
		return reply.code(status).send({ statusCode: status, error: status >= 500 ? "Internal Server Error" : "Bad Request", message: err.message });
	});

	app.get("/healthz", async () => ({
		ok: true,
		hiveId: hive.hiveId,
		instanceId: hive.instanceId,
		version: o.version,
		driver: hive.driver.info,
		host: o.host,
	}));

	const metrics = hiveMetrics(hive);
	app.get("/metrics", async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));

	app.get("/v1/snapshot", async (_req, reply) => {
		const snap = hive.snapshot() ?? (await hive.tick());
		return reply.send(snap);
	});

	app.post("/v1/workers", { schema: { body: spawnBody } }, async (req, reply) => {
		const info = hive.spawn(req.body as SpawnRequest);
		return reply.code(201).send(info);
	});

	app.get("/v1/workers", { schema: { querystring: listQuery } }, async (req) => {
		const q = req.query as { state?: string; label?: string };
		const state = q.state ?? "all";
		const [lk, lv] = q.label ? [q.label.slice(0, q.label.indexOf("=")), q.label.slice(q.label.indexOf("=") + 1)] : [null, null];
		return hive.list().filter((w) => (state === "all" || w.state === state) && (lk === null || w.labels[lk] === lv));
	});

	app.get("/v1/workers/:id", { schema: { params: idParam } }, async (req, reply) => {
		const { id } = req.params as { id: string };
		const w = hive.get(id);
		if (!w) return reply.code(404).send({ statusCode: 404, error: "Not Found", message: `no worker ${id}` });
		return w;
	});

	app.delete("/v1/workers/:id", { schema: { params: idParam } }, async (req) => {
		const { id } = req.params as { id: string };
		return hive.kill(id);
	});

	app.get("/v1/workers/:id/logs", { schema: { params: idParam, querystring: logsQuery } }, async (req, reply) => {
		const { id } = req.params as { id: string };
		const q = req.query as { follow?: string; offset?: string };
		if (!hive.get(id)) return reply.code(404).send({ statusCode: 404, error: "Not Found", message: `no worker ${id}` });
		const follow = q.follow === "true" || q.follow === "1";
		const ac = new AbortController();
		req.raw.on("close", () => ac.abort());
		reply.type("text/plain; charset=utf-8");
		return reply.send(Readable.from(tailFile(hive.logPath(id), Number(q.offset ?? 0), follow ? () => hive.get(id)?.state === "running" : null, ac.signal)));
	});

	return app;
}

/** Yields the file from `offset`; while `more()` says the writer is alive, waits for growth like `tail -f`. */
async function* tailFile(path: string, offset: number, more: (() => boolean) | null, signal: AbortSignal): AsyncGenerator<Buffer> {
	const fh = await open(path, "r").catch(() => null);
	if (!fh) return;
	try {
		const buf = Buffer.allocUnsafe(64 * 1024);
		let pos = offset;
		for (;;) {
			const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
			if (bytesRead > 0) {
				pos += bytesRead;
				yield Buffer.from(buf.subarray(0, bytesRead));
				continue;
			}
			if (!more || signal.aborted) return;
			const alive = more();
			await sleep(100);
			// One more drain after the worker ended, then stop.
			if (!alive) more = null;
		}
	} finally {
		await fh.close();
	}
}
