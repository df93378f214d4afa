import fastifySseModule from "@fastify/sse";
import { requireToken } from "@apiary/kit/auth";
import { registerOpenApi } from "@apiary/kit/openapi";
import { schemaError } from "@apiary/kit/server";
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from "fastify";

// The package is CommonJS: its module.exports is the fastify-plugin-wrapped
// function (decorations reach sibling plugins); the typings describe it as a
// default export, which nodenext resolution reads as the namespace.
const fastifySse = fastifySseModule as unknown as FastifyPluginAsync<{ heartbeatInterval: number }>;
import { RegistryError, type Registry } from "./registry.ts";
import { claimRoutes } from "./routes/claims.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { eventsRoutes } from "./routes/events.ts";
import { fleetRoutes } from "./routes/fleet.ts";

export interface QueenAppOptions {
	registry: Registry;
	token: string | null;
	version: string;
	keepaliveMs: number;
	queueLimit: number;
	logger?: boolean;
	onLag?: (dropped: number) => void;
	metrics?: import("prom-client").Registry;
}

/** The queen's HTTP API: queries, claims, the SSE stream. Route groups are plugins. */
export async function buildQueenApp(o: QueenAppOptions): Promise<FastifyInstance> {
	const app = Fastify({
		logger: o.logger ?? false,
		bodyLimit: 64 * 1024,
		// SSE streams never end by themselves: close must cut them.
		forceCloseConnections: true,
		ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
		schemaErrorFormatter: schemaError,
	});
	requireToken(app, o.token);
	await registerOpenApi(app, { title: "Apiary queen", version: o.version, description: "The fleet registry: hives, workers, GPUs, claims, and the event stream (GET /v1/events, Server-Sent Events). Hives connect over a WebSocket at /v1/hives/connect." });
	app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
		if (err instanceof RegistryError) return reply.code(err.status).send({ statusCode: err.status, error: err.status === 404 ? "Not Found" : "Conflict", message: err.message });
		const status = err.statusCode ?? 500;
		if (status >= 500) app.log.error(err);
		return reply.code(status).send({ statusCode: status, error: status >= 500 ? "Internal Server Error" : "Bad Request", message: err.message });
	});
	await app.register(fastifySse, { heartbeatInterval: o.keepaliveMs });
	const metrics = o.metrics;
	if (metrics) app.get("/metrics", async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
	app.get("/healthz", async () => ({ ok: true, version: o.version, lastEventId: o.registry.events.lastId, hives: o.registry.listHives().length }));
	await app.register(dashboardRoutes);
	await app.register(fleetRoutes, { registry: o.registry });
	await app.register(claimRoutes, { registry: o.registry });
	await app.register(eventsRoutes, { registry: o.registry, queueLimit: o.queueLimit, onLag: o.onLag });
	return app;
}
