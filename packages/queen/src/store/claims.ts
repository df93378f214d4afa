import type { Claim } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

export interface ClaimTable {
	all(): Claim[];
	insert(c: Claim): void;
	delete(id: string): void;
}

export function sqliteClaims(db: SqliteDb): ClaimTable {
	return {
		all: () =>
			(
				db.q("SELECT id, holder, gpus, created_at, expires_at FROM claims").all() as {
					id: string;
					holder: string;
					gpus: string;
					created_at: string;
					expires_at: string;
				}[]
			).map((r) => ({
				id: r.id,
				holder: r.holder,
				gpus: JSON.parse(r.gpus) as Claim["gpus"],
				createdAt: r.created_at,
				expiresAt: r.expires_at,
			})),
		insert: (c) =>
			void db.run(
				"INSERT INTO claims (id, holder, gpus, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
				c.id,
				c.holder,
				JSON.stringify(c.gpus),
				c.createdAt,
				c.expiresAt,
			),
		delete: (id) => void db.run("DELETE FROM claims WHERE id = ?", id),
	};
}
