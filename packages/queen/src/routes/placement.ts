import {
	ErrorBody,
	IdParams,
	PendingPlacements,
	PlacementAnswer,
	PlacementBody,
	RelayCommandBody,
	RelayCommandReply,
	RelayLogsQuery,
	RelayQuery,
	WorkerInfo,
} from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { relayLogs } from "../log-relay.ts";
import type { Placer } from "../placement/placer.ts";
import { PlacementError } from "../placement/placer.ts";
import type { Registry } from "../registry.ts";
import { actorOf } from "../auth/authorize.ts";
import type { HiveCommander } from "../hive-commands.ts";
import type { HiveSocketServer } from "../socket.ts";

/**
 * Placement: run a worker through the queen, stop it and read its output,
 * relayed over the hive's socket: this queen's, or (`commands`) through the
 * queen the hive is connected to, which serves that relay here too.
 */
export const placementRoutes: FastifyPluginAsyncTypebox<{ registry: Registry; placer: Placer; sockets: HiveSocketServer; commands: HiveCommander }> = async (
	app,
	o,
) => {
	const { registry, placer, sockets, commands } = o;

	app.post(
		"/v1/workers",
		{ config: { role: "schedule" }, schema: { body: PlacementBody, response: { 201: PlacementAnswer, 409: ErrorBody } } },
		async (req, reply) => {
			// A waiter whose client goes away leaves the queue.
			const ac = new AbortController();
			// The response's close, not the request's: that one fires once the body is read.
			reply.raw.on("close", () => {
				if (!reply.raw.writableFinished) ac.abort();
			});
			return reply.code(201).send(await placer.place(req.body, ac.signal, req.headers.authorization, actorOf(req)));
		},
	);

	app.get("/v1/placements", { config: { role: "read" }, schema: { response: { 200: PendingPlacements } } }, async () => placer.pending());

	/** The worker's hive: the one asked for, else the only hive that reports that id (409 when several do). */
	const hiveOf = async (id: string, hive: string | undefined) => (await registry.findWorkerAnywhere(id, hive)).hiveId;

	app.delete(
		"/v1/workers/:id",
		{ config: { role: "schedule" }, schema: { params: IdParams, querystring: RelayQuery, response: { 200: WorkerInfo, 404: ErrorBody } } },
		async (req) => {
			const hiveId = await hiveOf(req.params.id, req.query.hive);
			const by = actorOf(req);
			const r = await commands.command(hiveId, { op: "stop", workerId: req.params.id, ...(by ? { by } : {}) }, { auth: req.headers.authorization });
			if (r.status !== 200) throw new PlacementError(r.status, `hive ${hiveId}: ${r.error}`);
			return r.body as WorkerInfo;
		},
	);

	app.get("/v1/workers/:id/logs", { config: { role: "schedule" }, schema: { params: IdParams, querystring: RelayLogsQuery } }, async (req, reply) => {
		const { hive, ...query } = req.query;
		const hiveId = await hiveOf(req.params.id, hive);
		const ac = new AbortController();
		reply.raw.on("close", () => ac.abort());
		const out = await relayLogs(commands, hiveId, req.params.id, query, { signal: ac.signal, auth: req.headers.authorization });
		reply.type("text/plain; charset=utf-8");
		return reply.send(out);
	});

	// Another queen's relay for a hive connected here: run on this queen's socket only (never forwarded
	// again, so two queens that disagree on where a hive is cannot bounce a command between them).
	app.post(
		"/v1/hives/:id/commands",
		{ config: { role: "schedule" }, schema: { params: IdParams, body: RelayCommandBody, response: { 200: RelayCommandReply, 503: ErrorBody } } },
		async (req, reply) => {
			const hiveId = req.params.id;
			if (!sockets.isConnected(hiveId)) throw new PlacementError(503, `hive ${hiveId} is not connected to this queen`);
			const cmd = req.body;
			if (cmd.op === "logs") {
				const ac = new AbortController();
				reply.raw.on("close", () => ac.abort());
				const out = await relayLogs(sockets, hiveId, cmd.workerId, cmd.query, { signal: ac.signal });
				reply.type("application/octet-stream");
				// A stream is sent as it is (the 200 schema describes spawn's and stop's envelope).
				return reply.send(out as never);
			}
			// The forwarding queen set its own timeout; the socket's closing answers 503 meanwhile.
			return sockets.command(hiveId, cmd, cmd.op === "spawn" ? { timeoutMs: 30_000 } : {});
		},
	);
};
