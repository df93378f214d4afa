import type { FastifyInstance } from "fastify";
import type { Registry } from "../registry.ts";

const claimBody = {
	type: "object",
	additionalProperties: false,
	required: ["count", "ttlSeconds", "holder"],
	properties: {
		count: { type: "integer", minimum: 1, maximum: 1024 },
		minMemoryMiB: { type: "integer", minimum: 0, maximum: 16_777_216 },
		sameHive: { type: "boolean" },
		ttlSeconds: { type: "integer", minimum: 1, maximum: 7 * 24 * 3600 },
		holder: { type: "string", minLength: 1, maxLength: 128 },
	},
} as const;

const idParam = { type: "object", required: ["id"], properties: { id: { type: "string", pattern: "^c-[0-9a-f]{12}$" } } } as const;

/** GPU claims for schedulers: atomic reservation, listing, release; expiry releases by itself. */
export async function claimRoutes(app: FastifyInstance, o: { registry: Registry }): Promise<void> {
	const { registry } = o;
	app.post("/v1/claims", { schema: { body: claimBody } }, async (req, reply) => {
		const claim = registry.claim(req.body as { count: number; minMemoryMiB?: number; sameHive?: boolean; ttlSeconds: number; holder: string });
		return reply.code(201).send(claim);
	});
	app.get("/v1/claims", async () => registry.listClaims());
	app.delete("/v1/claims/:id", { schema: { params: idParam } }, async (req) => registry.release((req.params as { id: string }).id));
}
