import { ErrorBody, RunBody, RunParams, RunsQuery, RunView, Type } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { actorOf } from "../auth/authorize.ts";
import type { Runs } from "../runs/runner.ts";

/** Sharded runs: one command as N shards over the fleet (queen run --shards). */
export const runRoutes: FastifyPluginAsyncTypebox<{ runs: Runs }> = async (app, o) => {
	const { runs } = o;
	app.post(
		"/v1/runs",
		{ config: { role: "schedule" }, schema: { body: RunBody, response: { 200: RunView, 201: RunView, 422: ErrorBody } } },
		async (req, reply) => {
			const { run, created } = await runs.create(req.body, actorOf(req), req.headers.authorization);
			// 200: a key already used for this run (the second client attaches to it).
			return reply.code(created ? 201 : 200).send(run);
		},
	);
	app.get("/v1/runs", { config: { role: "read" }, schema: { querystring: RunsQuery, response: { 200: Type.Array(RunView) } } }, async (req) =>
		runs.list(req.query.state),
	);
	app.get("/v1/runs/:id", { config: { role: "read" }, schema: { params: RunParams, response: { 200: RunView, 404: ErrorBody } } }, async (req) =>
		runs.get(req.params.id),
	);
	app.delete(
		"/v1/runs/:id",
		{ config: { role: "schedule" }, schema: { params: RunParams, response: { 200: RunView, 404: ErrorBody, 409: ErrorBody, 502: ErrorBody, 503: ErrorBody } } },
		async (req) => runs.cancel(req.params.id, req.headers.authorization),
	);
};
