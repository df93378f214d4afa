import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import swaggerModule from "@fastify/swagger";
import swaggerUiModule from "@fastify/swagger-ui";

// Both packages are CommonJS whose module.exports is the fastify-plugin
// wrapped function; nodenext typing sees the namespace, hence the casts.
const swagger = swaggerModule as unknown as FastifyPluginAsync<Record<string, unknown>>;
const swaggerUi = swaggerUiModule as unknown as FastifyPluginAsync<Record<string, unknown>>;

/**
 * OpenAPI generated from the route schemas: the document at /openapi.json and
 * a browsable UI at /docs (assets served from the package, no network).
 * Register before the routes so every route is seen.
 */
export async function registerOpenApi(app: FastifyInstance, info: { title: string; version: string; description: string }): Promise<void> {
	await app.register(swagger, { openapi: { openapi: "3.0.3", info } });
	await app.register(swaggerUi, { routePrefix: "/docs" });
	app.get("/openapi.json", { schema: { hide: true } as object }, async () => app.swagger());
}
