import type { Role } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

/** A token as stored: the hash of its secret, never the secret. */
export interface TokenRow {
	id: string;
	role: Role;
	name: string | null;
	hive: string | null;
	/** sha256 of the secret, hex. */
	hash: string;
	createdAt: string;
	expiresAt: string | null;
	revokedAt: string | null;
	/** The enrolment token that made this hive's own. */
	enrolledBy: string | null;
}

export interface TokenTable {
	all(): TokenRow[];
	insert(t: TokenRow): void;
	revoke(id: string, at: string): void;
	/** Several queens: every token as the database holds it now (another queen's new ones and revocations). */
	load?(): Promise<TokenRow[]>;
}

interface Row {
	id: string;
	role: Role;
	name: string | null;
	hive: string | null;
	hash: string;
	created_at: string;
	expires_at: string | null;
	revoked_at: string | null;
	enrolled_by: string | null;
}

export const tokenOf = (r: Row): TokenRow => ({
	id: r.id,
	role: r.role,
	name: r.name,
	hive: r.hive,
	hash: r.hash,
	createdAt: r.created_at,
	expiresAt: r.expires_at,
	revokedAt: r.revoked_at,
	enrolledBy: r.enrolled_by,
});

/** A token row's INSERT and its values, for either store (`mark`: SQLite's `?` or PostgreSQL's `$n`). */
export function insertToken(t: TokenRow, mark: (n: number) => string): [string, ...(string | null)[]] {
	const values = [t.id, t.role, t.name, t.hive, t.hash, t.createdAt, t.expiresAt, t.revokedAt, t.enrolledBy];
	const columns = "id, role, name, hive, hash, created_at, expires_at, revoked_at, enrolled_by";
	return [`INSERT INTO tokens (${columns}) VALUES (${values.map((_, i) => mark(i + 1)).join(", ")})`, ...values];
}

export function sqliteTokens(db: SqliteDb): TokenTable {
	return {
		all: () => (db.q("SELECT * FROM tokens ORDER BY created_at, id").all() as unknown as Row[]).map(tokenOf),
		insert: (t) => void db.run(...insertToken(t, () => "?")),
		revoke: (id, at) => void db.run("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", at, id),
	};
}
