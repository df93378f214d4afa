import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** With a token set, every mutating route requires `Authorization: Bearer <token>`. */
export function requireToken(app: FastifyInstance, token: string | null): void {
	if (!token) return;
	const want = Buffer.from(token);
	app.addHook("onRequest", async (req, reply) => {
		if (!MUTATING.has(req.method)) return;
		const got = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "");
		if (got.length !== want.length || !timingSafeEqual(got, want)) {
			return reply.code(401).send({ statusCode: 401, error: "Unauthorized", message: "authorization: a valid bearer token is required" });
		}
	});
}
