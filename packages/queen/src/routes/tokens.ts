import { ErrorBody, TokenBody, TokenCreated, TokenParams, TokenView, Type } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Credentials } from "../auth/credentials.ts";

/** Credentials with roles, made, listed and revoked by an admin; the secret is in the creation's answer alone. */
export const tokenRoutes: FastifyPluginAsyncTypebox<{ credentials: Credentials }> = async (app, o) => {
	const { credentials } = o;
	app.post("/v1/tokens", { config: { role: "admin" }, schema: { body: TokenBody, response: { 201: TokenCreated, 400: ErrorBody } } }, async (req, reply) =>
		reply.code(201).send(credentials.create(req.body)),
	);
	app.get("/v1/tokens", { config: { role: "admin" }, schema: { response: { 200: Type.Array(TokenView) } } }, async () => credentials.list());
	app.delete("/v1/tokens/:id", { config: { role: "admin" }, schema: { params: TokenParams, response: { 200: TokenView, 404: ErrorBody } } }, async (req) =>
		credentials.revoke(req.params.id),
	);
};
