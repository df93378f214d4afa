import fastifySseModule from "@fastify/sse";
import { createServer, type HttpsFiles } from "@apiary/kit/server";
import { QueenHealth } from "@apiary/protocol";
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import type { Registry as PromRegistry } from "prom-client";

// The package is CommonJS: its module.exports is the fastify-plugin-wrapped
// function (decorations reach sibling plugins); the typings describe it as a
// default export, which nodenext resolution reads as the namespace.
const fastifySse = fastifySseModule as unknown as FastifyPluginAsync<{ heartbeatInterval: number }>;
import { authorize, type Principal } from "./auth/authorize.ts";
import type { Auditor } from "./auth/audit.ts";
import type { Credentials } from "./auth/credentials.ts";
import type { HiveCommander } from "./hive-commands.ts";
import { tokenRoutes } from "./routes/tokens.ts";
import type { Placer } from "./placement/placer.ts";
import type { Runs } from "./runs/runner.ts";
import { runRoutes } from "./routes/runs.ts";
import type { Registry } from "./registry.ts";
import { placementRoutes } from "./routes/placement.ts";
import type { HiveSocketServer } from "./socket.ts";
import { claimRoutes } from "./routes/claims.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { eventsRoutes } from "./routes/events.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { gpuHealthRoutes } from "./routes/gpu-health.ts";
import { recommendationRoutes } from "./routes/recommendations.ts";

export interface QueenAppOptions {
	registry: Registry;
	placer: Placer;
	runs: Runs;
	sockets: HiveSocketServer;
	/** Commands for any hive: this queen's socket, or forwarded to the hive's queen. */
	commands: HiveCommander;
	/** Who may do what: tokens with roles (and --token-file, an admin token). */
	credentials: Credentials;
	/** The audit trail: every change and every refusal. */
	auditor: Auditor;
	/** HTTPS (and WSS) with this certificate and key. */
	https?: HttpsFiles;
	/** Listening off loopback without TLS (--insecure-plaintext): /healthz says so. */
	insecurePlaintext?: boolean;
	version: string;
	keepaliveMs: number;
	queueLimit: number;
	logger?: boolean;
	onLag?: (dropped: number) => void;
	metrics?: PromRegistry;
	/** The store's durability (PostgreSQL): a change is answered only once committed. */
	durable?: () => Promise<void>;
}

/** The queen's HTTP API: queries, claims, the SSE stream. Route groups are plugins. */
export async function buildQueenApp(o: QueenAppOptions): Promise<FastifyInstance> {
	const app = await createServer({
		bodyLimit: 64 * 1024,
		// Not the kit's single-token check: roles, below.
		token: null,
		https: o.https,
		logger: o.logger,
		forceCloseConnections: true,
		// Every route declares its role; the OpenAPI document and its UI are for readers.
		routeRoles: { defaults: { "/openapi.json": "read", "/docs": "read" } },
		openapi: {
			title: "Apiary queen",
			version: o.version,
			description:
				"The fleet registry: hives, workers, GPUs, claims, and the event stream (GET /v1/events, Server-Sent Events). Hives connect over a WebSocket at /v1/hives/connect.",
		},
	});
	// Each request's credential against its route's role: 401 without a valid one, 403 naming the role needed.
	const credentials = o.credentials;
	app.decorateRequest("principal", null);
	// preValidation: after the (size-limited) body is read, so a refusal's audit record can name its target, and
	// before the schema is checked, so a caller without the role learns nothing from validation errors.
	app.addHook("preValidation", async (req, reply) => {
		const need = req.routeOptions.config?.role ?? "admin";
		if (need === "open") return;
		const principal = credentials.authOn ? await credentials.resolveFresh(req.headers.authorization) : null;
		(req as unknown as { principal: Principal | null }).principal = principal;
		const d = authorize(principal, need, credentials.authOn);
		if (!d.ok) return reply.code(d.status).send({ statusCode: d.status, error: d.status === 401 ? "Unauthorized" : "Forbidden", message: d.message });
	});
	// Every change, and every refusal, is an audit record: who, from where, what, on what, how it went.
	const auditor = o.auditor;
	app.addHook("onResponse", async (req, reply) => {
		const status = reply.statusCode;
		const reads = req.method === "GET" || req.method === "HEAD";
		if (reads && status !== 401 && status !== 403) return;
		if (req.routeOptions.config?.role === "open") return;
		const params = (req.params ?? {}) as { id?: string };
		const body = (req.body ?? {}) as { id?: unknown; hive?: unknown };
		const target = params.id ?? (typeof body.id === "string" ? body.id : typeof body.hive === "string" ? `hive ${body.hive}` : null);
		auditor.record({
			principal: (req as unknown as { principal?: Principal | null }).principal ?? null,
			remote: req.ip,
			op: `${req.method} ${req.routeOptions.url ?? req.url.split("?")[0]}`,
			target,
			outcome: status,
		});
	});
	await app.register(fastifySse, { heartbeatInterval: o.keepaliveMs });
	const durable = o.durable;
	if (durable) {
		// Every change is made in memory at once and committed behind it: its answer waits for the commit.
		app.addHook("onSend", async (req, _reply, payload) => {
			if (req.method !== "GET" && req.method !== "HEAD") await durable();
			return payload;
		});
	}
	const metrics = o.metrics;
	if (metrics) app.get("/metrics", { config: { role: "read" } }, async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
	app.get("/healthz", { config: { role: "open" }, schema: { response: { 200: QueenHealth, 503: QueenHealth } } }, async (_req, reply) => {
		// A queen whose store cannot commit is not healthy: it refuses every change (a load balancer should pass it by).
		const failure = o.registry.storeFailure;
		return reply.code(failure ? 503 : 200).send({
			ok: failure === null,
			version: o.version,
			lastEventId: o.registry.events.lastId,
			hives: o.registry.hiveCount(),
			store: { ok: failure === null, error: failure?.error ?? null, since: failure?.since ?? null },
			...(o.insecurePlaintext ? { insecurePlaintext: true } : {}),
		});
	});
	await app.register(dashboardRoutes);
	await app.register(fleetRoutes, { registry: o.registry });
	await app.register(claimRoutes, { registry: o.registry });
	await app.register(recommendationRoutes, { registry: o.registry });
	await app.register(tokenRoutes, { credentials, store: o.registry.store });
	await app.register(placementRoutes, { registry: o.registry, placer: o.placer, sockets: o.sockets, commands: o.commands });
	await app.register(runRoutes, { runs: o.runs });
	await app.register(gpuHealthRoutes, { registry: o.registry, commands: o.commands });
	await app.register(eventsRoutes, { registry: o.registry, queueLimit: o.queueLimit, onLag: o.onLag, credentials });
	return app as unknown as FastifyInstance;
}
