import { statSync } from "node:fs";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { createServer } from "@apiary/kit/server";
import { ErrorBody, HiveHealth, HiveWorkersQuery, type HostFacts, IdParams, LogsQuery, Snapshot, SpawnBody, Type, WorkerInfo } from "@apiary/protocol";
import type { FastifyInstance } from "fastify";
import { type Hive, HiveError } from "../hive.ts";
import { lastLines, lastLinesOf } from "../log-cap.ts";
import { hiveMetrics } from "../metrics.ts";

export interface HiveAppOptions {
	hive: Hive;
	host: HostFacts | null;
	token: string | null;
	logger?: boolean;
	version: string;
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
		reply.code(201).send(shown(hive.spawn(req.body))),
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
		req.raw.on("close", () => ac.abort());
		reply.type("text/plain; charset=utf-8");
		const path = hive.logPath(id);
		const more = follow ? () => hive.get(id)?.state === "running" : null;
		return reply.send(Readable.from(logStream(path, q, more, ac.signal)));
	});

	return app as unknown as FastifyInstance;
}

/** A worker's output: the last N lines, or from a byte offset of the current file, or all of it (rotated part first); then followed if asked. */
async function* logStream(path: string, q: LogsQuery, more: (() => boolean) | null, signal: AbortSignal): AsyncGenerator<Buffer> {
	if (q.tail !== undefined) {
		const n = Number(q.tail);
		const from = sizeOf(path);
		const recent = Buffer.concat([lastLines(`${path}.1`, n, TAIL_MAX_BYTES), lastLines(path, n, TAIL_MAX_BYTES, from)]);
		const lines = lastLinesOf(recent, n);
		if (lines.length > 0) yield lines;
		// Following: on from where the lines were taken.
		if (more) yield* tailFile(path, from, more, signal);
		return;
	}
	if (q.offset === undefined) {
		const rotated = await open(`${path}.1`, "r").catch(() => null); // never rotated: nothing older
		if (rotated) {
			try {
				for await (const chunk of rotated.createReadStream({ autoClose: false })) yield chunk as Buffer;
			} finally {
				await rotated.close();
			}
		}
	}
	yield* tailFile(path, Number(q.offset ?? 0), more, signal);
}

const TAIL_MAX_BYTES = 4 * 2 ** 20;

function sizeOf(path: string): number {
	try {
		return statSync(path).size;
	} catch {
		// No log yet: follow from its start.
		return 0;
	}
}

/** Yields the file from `offset`; while `more()` says the writer is alive, waits for growth like `tail -f`. */
async function* tailFile(path: string, offset: number, more: (() => boolean) | null, signal: AbortSignal): AsyncGenerator<Buffer> {
	// No log file yet (the worker wrote nothing, or it was pruned): an empty body.
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
			// Truncated under us by the log cap: the writer starts over at 0.
			if ((await fh.stat()).size < pos) pos = 0;
			const alive = more();
			await sleep(100);
			// One more drain after the worker ended, then stop.
			if (!alive) more = null;
		}
	} finally {
		await fh.close();
	}
}

/** A worker as the API shows it: its environment's keys, never its values (they may be secrets). */
export function shown(w: WorkerInfo): WorkerInfo {
	const env: Record<string, string> = {};
	for (const k of Object.keys(w.env)) env[k] = "<redacted>";
	return { ...w, env };
}
