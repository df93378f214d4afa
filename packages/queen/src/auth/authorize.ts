import { type Actor, allows, ID_PATTERN, type Role, type RouteRole } from "@apiary/protocol";

// Policy alone (no I/O): who may use a route, as Kubernetes' RBAC authorizer
// answers it, apart from how a credential is found (credentials.ts) and
// what a route does. Tested with plain data.

/** Who a request speaks for. */
export interface Principal {
	/** The token's id; null for the --token-file token and for an open queen. */
	tokenId: string | null;
	name: string;
	role: Role;
	/** Role hive: the one hive it speaks for (null: an enrolment token). */
	hive: string | null;
}

/** Who a request speaks for, as records name it (placedBy, stoppedBy, a drain's by); none on an open queen. */
export function actorOf(req: unknown): Actor | undefined {
	const p = (req as { principal?: Principal | null }).principal;
	return p ? { tokenId: p.tokenId, name: p.role === "hive" && p.hive ? `hive ${p.hive}` : p.name } : undefined;
}

export type Decision = { ok: true } | { ok: false; status: 401 | 403; message: string };

const HINT = "give a token with Authorization: Bearer (queen token create makes one; the CLIs take --token-file FILE or APIARY_TOKEN)";

/**
 * `principal`: the request's credential, resolved (null: none, or one that
 * is unknown, expired or revoked). `authOn`: false on a queen with no
 * credential configured at all, which serves loopback only and lets everyone
 * through (`npm start`).
 */
export function authorize(principal: Principal | null, need: RouteRole, authOn: boolean): Decision {
	if (need === "open" || !authOn) return { ok: true };
	if (!principal) return { ok: false, status: 401, message: `authorization: a valid bearer token is required; ${HINT}` };
	if (allows(principal.role, need)) return { ok: true };
	const what = principal.role === "hive" ? "a hive's token is for its socket alone" : `token ${principal.tokenId ?? principal.name} has role ${principal.role}`;
	return { ok: false, status: 403, message: `this needs role ${need} (or above); ${what}` };
}

/** Whether a credential may hold the hive socket as `hiveId` (NodeRestriction: a hive may only be itself). */
export function mayBeHive(principal: Principal | null, hiveId: string, authOn: boolean): { ok: true } | { ok: false; why: string } {
	if (!authOn) return { ok: true };
	if (!principal) return { ok: false, why: "no valid credential" };
	// The fleet-wide admin credential (--token-file, as before roles) may still connect any hive.
	if (principal.role === "admin") return { ok: true };
	if (principal.role !== "hive") return { ok: false, why: `role ${principal.role} cannot hold a hive socket (role hive can)` };
	if (principal.hive !== null && principal.hive !== hiveId) return { ok: false, why: `this credential speaks for hive ${principal.hive}, not ${hiveId}` };
	return { ok: true };
}

const hiveIdRe = new RegExp(ID_PATTERN);

/**
 * The hive a client certificate speaks for (--tls-client-ca): one the TLS
 * layer verified against that CA, whose subject CN is a hive id. Anything
 * else is no credential at all (the token, if any, decides).
 */
export function certificatePrincipal(authorized: boolean, cert: { subject?: { CN?: string | string[] }; serialNumber?: string } | null): Principal | null {
	const cn = cert?.subject?.CN;
	if (!authorized || typeof cn !== "string" || !hiveIdRe.test(cn)) return null;
	return { tokenId: null, name: `client certificate CN=${cn} serial ${cert?.serialNumber ?? "?"}`, role: "hive", hive: cn };
}
