import { Claim, ClaimBody, ClaimParams, ErrorBody, Type } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Registry } from "../registry.ts";

/** GPU claims for schedulers: atomic reservation, listing, release; expiry releases by itself. */
export const claimRoutes: FastifyPluginAsyncTypebox<{ registry: Registry }> = async (app, o) => {
	const { registry } = o;
	app.post("/v1/claims", { config: { role: "schedule" }, schema: { body: ClaimBody, response: { 201: Claim, 409: ErrorBody } } }, async (req, reply) =>
		reply.code(201).send(await registry.exclusive(() => registry.claim(req.body))),
	);
	app.get("/v1/claims", { config: { role: "read" }, schema: { response: { 200: Type.Array(Claim) } } }, async () => registry.listClaims());
	app.delete("/v1/claims/:id", { config: { role: "schedule" }, schema: { params: ClaimParams, response: { 200: Claim, 404: ErrorBody } } }, async (req) => {
		// Several queens: a claim another queen made a moment ago may not be read here yet. An unknown id is
		// looked for again under the claims lock, which first reads the fleet's log to its end; a 404 is then true.
		if (registry.store.shared && !registry.getClaim(req.params.id)) return registry.exclusive(() => registry.release(req.params.id));
		return registry.release(req.params.id);
	});
};
