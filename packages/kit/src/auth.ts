import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";

/** Constant-time check of an `Authorization: Bearer <token>` header. */
export function checkBearer(header: string | undefined, token: string): boolean {
	const got = Buffer.from(/^Bearer (.+)$/.exec(header ?? "")?.[1] ?? "");
	const want = Buffer.from(token);
	return got.length === want.length && timingSafeEqual(got, want);
}

/**
 * With a token set, every route but the `open` ones requires
 * `Authorization: Bearer <token>` — reads included: the event stream,
 * worker lists and logs carry commands, labels and output. `/healthz` stays
 * open for load balancers and probes.
 */
export function requireToken(app: FastifyInstance, token: string | null, open: readonly string[] = ["/healthz"]): void {
	if (!token) return;
	const openPaths = new Set(open);
	app.addHook("onRequest", async (req, reply) => {
		const q = req.url.indexOf("?");
		const path = q < 0 ? req.url : req.url.slice(0, q);
		if (openPaths.has(path) || checkBearer(req.headers.authorization, token)) return;
		return reply.code(401).send({ statusCode: 401, error: "Unauthorized", message: "authorization: a valid bearer token is required" });
	});
}
