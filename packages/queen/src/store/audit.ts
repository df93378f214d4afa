import type { AuditRecord } from "@apiary/protocol";
import type { SqliteDb } from "./sqlite.ts";

// The audit trail: who did, or was refused, what. Bounded (prune): the newest
// records within an age, as a log, never the fleet's state.

export interface AuditFilter {
	since?: number;
	actor?: string;
	op?: string;
	limit: number;
}

export interface AuditTable {
	append(r: Omit<AuditRecord, "id">): void;
	list(f: AuditFilter): Promise<AuditRecord[]>;
	/** Keeps the newest `keep` records, none older than `before` (ISO). */
	prune(keep: number, before: string): void;
}

interface Row {
	id: number | string;
	at: string;
	actor: string;
	role: string | null;
	token_id: string | null;
	remote: string | null;
	op: string;
	target: string | null;
	outcome: number;
	detail: string | null;
}

export const auditOf = (r: Row): AuditRecord => ({
	id: Number(r.id),
	at: r.at,
	actor: r.actor,
	role: r.role,
	tokenId: r.token_id,
	remote: r.remote,
	op: r.op,
	target: r.target,
	outcome: Number(r.outcome),
	detail: r.detail,
});

/** An audit record's INSERT and its values, for either store (`mark`: SQLite's `?` or PostgreSQL's `$n`). */
export function insertAudit(r: Omit<AuditRecord, "id">, mark: (n: number) => string): [string, ...(string | number | null)[]] {
	const values = [r.at, r.actor, r.role, r.tokenId, r.remote, r.op, r.target, r.outcome, r.detail];
	const columns = "at, actor, role, token_id, remote, op, target, outcome, detail";
	return [`INSERT INTO audit (${columns}) VALUES (${values.map((_, i) => mark(i + 1)).join(", ")})`, ...values];
}

export function sqliteAudit(db: SqliteDb): AuditTable {
	return {
		append: (r) => void db.run(...insertAudit(r, () => "?")),
		list: async (f) =>
			(
				db
					.q(`SELECT * FROM audit WHERE id > ? AND (? IS NULL OR actor = ? OR token_id = ?) AND (? IS NULL OR op LIKE ? ESCAPE '\\') ORDER BY id LIMIT ?`)
					.all(
						f.since ?? 0,
						f.actor ?? null,
						f.actor ?? null,
						f.actor ?? null,
						f.op ?? null,
						`%${(f.op ?? "").replace(/[\\%_]/g, "\\$&")}%`,
						f.limit,
					) as unknown as Row[]
			).map(auditOf),
		prune: (keep, before) => {
			db.run("DELETE FROM audit WHERE at < ?", before);
			db.run("DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)", keep);
		},
	};
}
