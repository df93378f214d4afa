import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";

/** Constant-time check of an `Authorization: Bearer <token>` header. */
export function checkBearer(header: string | undefined, token: string): boolean {
	const got = Buffer.from(/^Bearer (.+)$/.exec(header ?? "")?.[1] ?? "");
	const want = Buffer.from(token);
	return got.length === want.length && timingSafeEqual(got, want);
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** With a token set, every mutating route requires `Authorization: Bearer <token>`. */
export function requireToken(app: FastifyInstance, token: string | null): void {
	if (!token) return;
	app.addHook("onRequest", async (req, reply) => {
		if (MUTATING.has(req.method) && !checkBearer(req.headers.authorization, token)) {
			return reply.code(401).send({ statusCode: 401, error: "Unauthorized", message: "authorization: a valid bearer token is required" });
		}
	});
}
