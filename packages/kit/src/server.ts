import Fastify, { type FastifyInstance, type FastifySchemaValidationError } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { RouteRole } from "@apiary/protocol";
import { requireToken } from "./auth.ts";
import { registerOpenApi } from "./openapi.ts";

export interface ServerOptions {
	bodyLimit: number;
	token: string | null;
	logger?: boolean;
	/** SSE streams never end by themselves: close must cut them. */
	forceCloseConnections?: boolean;
	openapi: { title: string; version: string; description: string };
	/** Routes that need no token even when one is set (default: /healthz). */
	openPaths?: readonly string[];
	/**
	 * Every route must declare the role it needs (`config: { role }`), or
	 * building the app fails naming it: a route added without one can never
	 * ship open by mistake. Routes this kit registers itself (OpenAPI) take
	 * theirs from `defaults`, by path prefix. Checking them is the caller's
	 * (`req.routeOptions.config.role`).
	 */
	routeRoles?: { defaults: Record<string, RouteRole> };
	/** HTTPS (and so WSS on the same port). */
	https?: HttpsFiles;
}

/** PEM certificate chain and key; `ca` with `requestCert`: client certificates are asked for and checked against it. */
export interface HttpsFiles {
	cert: Buffer;
	key: Buffer;
	ca?: Buffer;
	requestCert?: boolean;
	rejectUnauthorized?: boolean;
}

/** A route and the role it declared (what a test walks: every route × every role). */
export interface DeclaredRoute {
	method: string;
	url: string;
	role: RouteRole;
}

declare module "fastify" {
	interface FastifyInstance {
		/** With routeRoles: every route registered, with its role. */
		declaredRoutes: DeclaredRoute[];
	}
	interface FastifyContextConfig {
		/** The role a request needs (roles.ts); checked by the queen's authorization hook. */
		role?: RouteRole;
	}
}

/**
 * A fastify app as both daemons build it: strict validation (unknown fields
 * are errors, nothing coerced), messages that name the field, the token rule,
 * OpenAPI from the route schemas, and fastify's own error path, so an
 * HttpError's statusCode picks the label (404 "Not Found", 409 "Conflict").
 */
export async function createServer(o: ServerOptions) {
	const app = Fastify({
		...(o.https ? { https: { ...o.https } } : {}),
		logger: o.logger ?? false,
		bodyLimit: o.bodyLimit,
		forceCloseConnections: o.forceCloseConnections ?? false,
		ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
		schemaErrorFormatter: schemaError,
	}).withTypeProvider<TypeBoxTypeProvider>();
	requireToken(app as unknown as FastifyInstance, o.token, o.openPaths);
	const roles = o.routeRoles;
	const declared: DeclaredRoute[] = [];
	app.decorate("declaredRoutes", declared);
	if (roles) {
		app.addHook("onRoute", (route) => {
			const config = (route.config ?? {}) as { role?: RouteRole };
			let role = config.role;
			if (!role) {
				const prefix = Object.keys(roles.defaults).find((p) => route.url === p || route.url.startsWith(`${p}/`));
				if (!prefix) throw new Error(`route ${String(route.method)} ${route.url} declares no role (config: { role }): every route says who may use it`);
				role = roles.defaults[prefix]!;
				route.config = { ...config, role } as typeof route.config;
			}
			for (const method of [route.method].flat()) declared.push({ method: String(method), url: route.url, role });
		});
	}
	await registerOpenApi(app as unknown as FastifyInstance, o.openapi);
	return app;
}

export type Server = Awaited<ReturnType<typeof createServer>>;

/** A validation message that names the field: "body.cpu must be number", "body: unknown field \"bogus\"". */
export function schemaError(errors: FastifySchemaValidationError[], dataVar: string): Error {
	const e = errors.find((x) => x.keyword !== "anyOf") ?? errors[0]!;
	const path = `${dataVar}${e.instancePath.replaceAll("/", ".")}`;
	if (e.keyword === "additionalProperties") return new Error(`${path}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`);
	if (e.keyword === "required") return new Error(`${path}: missing field "${(e.params as { missingProperty: string }).missingProperty}"`);
	return new Error(`${path} ${e.message}`);
}
