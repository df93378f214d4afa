import { AuditQuery, AuditRecord, ErrorBody, TokenBody, TokenCreated, TokenParams, TokenView, Type } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Credentials } from "../auth/credentials.ts";
import type { QueenStore } from "../store/store.ts";

/** Credentials with roles, made, listed and revoked by an admin (the secret is in the creation's answer alone), and the audit trail. */
export const tokenRoutes: FastifyPluginAsyncTypebox<{ credentials: Credentials; store: QueenStore }> = async (app, o) => {
	const { credentials, store } = o;
	app.post("/v1/tokens", { config: { role: "admin" }, schema: { body: TokenBody, response: { 201: TokenCreated, 400: ErrorBody } } }, async (req, reply) =>
		reply.code(201).send(credentials.create(req.body)),
	);
	app.get("/v1/tokens", { config: { role: "admin" }, schema: { response: { 200: Type.Array(TokenView) } } }, async () => credentials.list());
	app.delete("/v1/tokens/:id", { config: { role: "admin" }, schema: { params: TokenParams, response: { 200: TokenView, 404: ErrorBody } } }, async (req) =>
		credentials.revoke(req.params.id),
	);
	app.get("/v1/audit", { config: { role: "admin" }, schema: { querystring: AuditQuery, response: { 200: Type.Array(AuditRecord) } } }, async (req) =>
		store.audit.list({
			since: req.query.since === undefined ? undefined : Number(req.query.since),
			actor: req.query.actor,
			op: req.query.op,
			limit: req.query.limit === undefined ? 1000 : Number(req.query.limit),
		}),
	);
};
