import type { Clock } from "@apiary/kit/clock";
import type { QueenStore } from "../store/store.ts";
import type { Principal } from "./authorize.ts";

// The audit trail's writer: every mutating request and every refused one (a
// 401/403, a hive impersonation) becomes a record in the queen's database,
// as Kubernetes' audit log and Nomad's event stream of ACL denials do.

export interface AuditEntry {
	principal: Principal | null;
	remote: string | null;
	op: string;
	target: string | null;
	outcome: number;
	detail?: string | null;
}

export class Auditor {
	private readonly store: QueenStore;
	private readonly clock: Clock;
	private readonly log: (msg: string, extra?: object) => void;

	constructor(store: QueenStore, clock: Clock, log: (msg: string, extra?: object) => void) {
		this.store = store;
		this.clock = clock;
		this.log = log;
	}

	record(e: AuditEntry): void {
		const p = e.principal;
		try {
			this.store.tx(() =>
				this.store.audit.append({
					at: new Date(this.clock.wall()).toISOString(),
					actor: p ? (p.role === "hive" && p.hive ? `hive ${p.hive}` : p.name) : "anonymous",
					role: p?.role ?? null,
					tokenId: p?.tokenId ?? null,
					remote: e.remote,
					op: e.op,
					target: e.target,
					outcome: e.outcome,
					detail: e.detail?.slice(0, 500) ?? null,
				}),
			);
		} catch (err) {
			// The request has been answered already; a record that cannot be stored is said, not hidden.
			this.log("audit record not stored", { op: e.op, outcome: e.outcome, err: String(err) });
		}
	}
}
