// The credential bodies and views (schemas); the roles themselves are in
// role-names.ts, which a client command can load without TypeBox.
import { Type } from "@sinclair/typebox";
import { Nullable, type Static, StringEnum } from "./schema.ts";

export { allows, ROLES, type Role, type RouteRole } from "./role-names.ts";
import { ROLES } from "./role-names.ts";

export const TokenBody = Type.Object(
	{
		role: StringEnum(ROLES),
		name: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: "^[^\\u0000-\\u001f]*$" })),
		hive: Type.Optional(
			Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,62}$", description: "role hive: the one hive id it speaks for (none: an enrolment token)" }),
		),
		ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 * 365 * 86_400 })),
	},
	{ additionalProperties: false },
);
export type TokenBody = Static<typeof TokenBody>;

/** A token as listed: never its secret. */
export const TokenView = Type.Object({
	id: Type.String(),
	role: StringEnum(ROLES),
	name: Nullable(Type.String()),
	hive: Nullable(Type.String()),
	createdAt: Type.String(),
	expiresAt: Nullable(Type.String()),
	revokedAt: Nullable(Type.String()),
	/** An enrolment token's hive got this one: it speaks for that hive alone. */
	enrolledBy: Nullable(Type.String()),
});
export type TokenView = Static<typeof TokenView>;

/** A token as created: its secret, shown this once. */
export const TokenCreated = Type.Composite([TokenView, Type.Object({ token: Type.String({ description: "the secret: shown once, stored only as a hash" }) })]);
export type TokenCreated = Static<typeof TokenCreated>;

export const TokenParams = Type.Object({ id: Type.String({ pattern: "^t-[0-9a-f]{12}$" }) });
export type TokenParams = Static<typeof TokenParams>;

/** One audit record: who did (or was refused) what, from where, and how it went. */
export const AuditRecord = Type.Object({
	id: Type.Integer(),
	at: Type.String(),
	actor: Type.String({ description: "the token's name (or id), --token-file, a hive id, or anonymous" }),
	role: Nullable(Type.String()),
	tokenId: Nullable(Type.String()),
	remote: Nullable(Type.String()),
	op: Type.String({ description: 'e.g. "POST /v1/workers", "hive socket"' }),
	target: Nullable(Type.String()),
	outcome: Type.Integer({ description: "the HTTP status answered (or the socket's close code)" }),
	detail: Nullable(Type.String()),
});
export type AuditRecord = Static<typeof AuditRecord>;

export const AuditQuery = Type.Object(
	{
		since: Type.Optional(Type.String({ pattern: "^[0-9]{1,15}$", description: "records after this id" })),
		actor: Type.Optional(Type.String({ maxLength: 128 })),
		op: Type.Optional(Type.String({ maxLength: 128, description: "records whose operation contains this" })),
		limit: Type.Optional(Type.String({ pattern: "^[1-9][0-9]{0,3}$|^10000$" })),
	},
	{ additionalProperties: false },
);
export type AuditQuery = Static<typeof AuditQuery>;
