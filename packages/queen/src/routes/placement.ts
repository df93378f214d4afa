import { ErrorBody, IdParams, PendingPlacements, PlacementAnswer, PlacementBody, RelayLogsQuery, RelayQuery, WorkerInfo } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { relayLogs } from "../log-relay.ts";
import type { Placer } from "../placement/placer.ts";
import { PlacementError } from "../placement/placer.ts";
import { type Registry, RegistryError } from "../registry.ts";
import type { HiveSocketServer } from "../socket.ts";

/** Placement: run a worker through the queen, stop it and read its output, relayed over the hive's socket. */
export const placementRoutes: FastifyPluginAsyncTypebox<{ registry: Registry; placer: Placer; sockets: HiveSocketServer }> = async (app, o) => {
	const { registry, placer, sockets } = o;

	app.post("/v1/workers", { schema: { body: PlacementBody, response: { 201: PlacementAnswer, 409: ErrorBody } } }, async (req, reply) => {
		// A waiter whose client goes away leaves the queue.
		const ac = new AbortController();
		// The response's close, not the request's: that one fires once the body is read.
		reply.raw.on("close", () => {
			if (!reply.raw.writableFinished) ac.abort();
		});
		return reply.code(201).send(await placer.place(req.body, ac.signal));
	});

	app.get("/v1/placements", { schema: { response: { 200: PendingPlacements } } }, async () => placer.pending());

	/** The worker's hive: the one asked for, else the hive of its newest record. */
	const hiveOf = (id: string, hive: string | undefined) => {
		const w = registry.getWorker(id, hive);
		if (!w) throw new RegistryError(404, `no worker ${id}${hive ? ` on hive ${hive}` : ""}`);
		return w.hiveId;
	};

	app.delete("/v1/workers/:id", { schema: { params: IdParams, querystring: RelayQuery, response: { 200: WorkerInfo, 404: ErrorBody } } }, async (req) => {
		const hiveId = hiveOf(req.params.id, req.query.hive);
		const r = await sockets.command(hiveId, { op: "stop", workerId: req.params.id });
		if (r.status !== 200) throw new PlacementError(r.status, `hive ${hiveId}: ${r.error}`);
		return r.body as WorkerInfo;
	});

	app.get("/v1/workers/:id/logs", { schema: { params: IdParams, querystring: RelayLogsQuery } }, async (req, reply) => {
		const { hive, ...query } = req.query;
		const hiveId = hiveOf(req.params.id, hive);
		const ac = new AbortController();
		reply.raw.on("close", () => ac.abort());
		const out = await relayLogs(sockets, hiveId, req.params.id, query, { signal: ac.signal });
		reply.type("text/plain; charset=utf-8");
		return reply.send(out);
	});
};
