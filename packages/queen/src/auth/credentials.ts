import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenBody, TokenCreated, TokenView } from "@apiary/protocol";
import type { Clock } from "@apiary/kit/clock";
import { checkBearer } from "@apiary/kit/auth";
import { HttpError } from "@apiary/kit/errors";
import type { QueenStore } from "../store/store.ts";
import type { TokenRow } from "../store/tokens.ts";
import type { Principal } from "./authorize.ts";

// The queen's credentials: tokens with a role, made by an admin and stored as
// the hash of their secret (SHA-256: a secret is 256 random bits, so no
// password hashing is needed), honoured by every queen of a fleet (several
// queens reload the table every 2 s and on a miss). A revoked or expired
// token stops working at once, and the streams and hive sockets opened with
// it are closed within a second or two (`track`).

/** `apiary_<id>_<secret>`: the id finds the row, the secret proves it. */
const FORMAT = /^apiary_(t-[0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string) => createHash("sha256").update(s).digest();

export class CredentialError extends HttpError {
	override name = "CredentialError";
}

interface Session {
	principal: Principal;
	close: (why: string) => void;
}

export class Credentials {
	private readonly store: QueenStore;
	private readonly fileToken: string | null;
	private readonly clock: Clock;
	private readonly log: (msg: string, extra?: object) => void;
	private byId = new Map<string, TokenRow>();
	private readonly sessions = new Set<Session>();
	private readonly timer: NodeJS.Timeout;
	private reloading = false;

	/** Hives may come with client certificates (--tls-client-ca): a credential, so the queen is not open to all. */
	private readonly certificates: boolean;

	constructor(store: QueenStore, o: { fileToken: string | null; clock: Clock; log?: (msg: string, extra?: object) => void; certificates?: boolean }) {
		this.store = store;
		this.certificates = o.certificates === true;
		this.fileToken = o.fileToken;
		this.clock = o.clock;
		this.log = o.log ?? (() => {});
		for (const t of store.tokens.all()) this.byId.set(t.id, t);
		let tick = 0;
		this.timer = setInterval(() => {
			// Several queens: another's new tokens and revocations, every 2 s.
			if (++tick % 2 === 0) void this.reload();
			this.closeDead();
		}, 1000);
		this.timer.unref();
	}

	close(): void {
		clearInterval(this.timer);
	}

	/** Off on a queen with no credential at all (no --token-file, no token made): it serves loopback only, open to all. */
	get authOn(): boolean {
		if (this.fileToken !== null || this.certificates) return true;
		for (const t of this.byId.values()) if (this.live(t)) return true;
		return false;
	}

	private live(t: TokenRow): boolean {
		return t.revokedAt === null && (t.expiresAt === null || Date.parse(t.expiresAt) > this.clock.wall());
	}

	/** Who an `Authorization` header speaks for; null when it names no live credential. */
	resolve(header: string | undefined): Principal | null {
		if (this.fileToken !== null && checkBearer(header, this.fileToken)) return { tokenId: null, name: "--token-file", role: "admin", hive: null };
		const m = FORMAT.exec(/^Bearer (.+)$/.exec(header ?? "")?.[1] ?? "");
		if (!m) return null;
		const row = this.byId.get(m[1]!);
		if (!row || !this.live(row)) return null;
		if (!timingSafeEqual(sha256(m[2]!), Buffer.from(row.hash, "hex"))) return null;
		return { tokenId: row.id, name: row.name ?? row.id, role: row.role, hive: row.hive };
	}

	/** resolve(), and on a miss a look at the database (a token made on another queen a moment ago). */
	async resolveFresh(header: string | undefined): Promise<Principal | null> {
		const p = this.resolve(header);
		if (p || !this.store.tokens.load || !FORMAT.test(/^Bearer (.+)$/.exec(header ?? "")?.[1] ?? "")) return p;
		await this.reload();
		return this.resolve(header);
	}

	create(body: TokenBody, enrolledBy: string | null = null): TokenCreated {
		if (body.hive !== undefined && body.role !== "hive") throw new CredentialError(400, "body.hive goes with role hive only");
		const id = `t-${randomBytes(6).toString("hex")}`;
		const secret = randomBytes(32).toString("base64url");
		const now = this.clock.wall();
		const row: TokenRow = {
			id,
			role: body.role,
			name: body.name ?? null,
			hive: body.hive ?? null,
			hash: sha256(secret).toString("hex"),
			createdAt: new Date(now).toISOString(),
			expiresAt: body.ttlSeconds === undefined ? null : new Date(now + body.ttlSeconds * 1000).toISOString(),
			revokedAt: null,
			enrolledBy,
		};
		this.store.tx(() => this.store.tokens.insert(row));
		this.byId.set(id, row);
		return { ...view(row), token: `apiary_${id}_${secret}` };
	}

	list(): TokenView[] {
		return [...this.byId.values()].map(view);
	}

	/** Revoked at once: requests with it are refused, and its open streams and sockets closed. */
	revoke(id: string): TokenView {
		const row = this.byId.get(id);
		if (!row) throw new CredentialError(404, `no token ${id}`);
		if (row.revokedAt === null) {
			const at = new Date(this.clock.wall()).toISOString();
			this.store.tx(() => this.store.tokens.revoke(id, at));
			row.revokedAt = at;
		}
		this.closeDead();
		return view(row);
	}

	/**
	 * Enrolment: a hive that connected with an enrolment token (role hive, no
	 * hive id) gets a secret of its own, bound to its id; afterwards that id
	 * answers only to it. An id that has a credential of its own already is
	 * refused (the enrolment token cannot take over an enrolled hive).
	 */
	enrol(by: Principal, hiveId: string): { ok: true; credential: string; principal: Principal } | { ok: false; why: string } {
		const taken = [...this.byId.values()].find((t) => t.hive === hiveId && this.live(t));
		if (taken) return { ok: false, why: `hive ${hiveId} has a credential of its own (${taken.id}); an enrolment token cannot speak for it` };
		const made = this.create({ role: "hive", hive: hiveId, name: `enrolled ${hiveId}` }, by.tokenId);
		this.log("hive enrolled", { hiveId, token: made.id, by: by.tokenId });
		return { ok: true, credential: made.token, principal: { tokenId: made.id, name: made.name ?? made.id, role: "hive", hive: hiveId } };
	}

	/** A stream or socket opened with `principal`: closed when its token is revoked or expires. Returns the untrack. */
	track(principal: Principal, close: (why: string) => void): () => void {
		const s: Session = { principal, close };
		this.sessions.add(s);
		return () => this.sessions.delete(s);
	}

	private closeDead(): void {
		for (const s of this.sessions) {
			const id = s.principal.tokenId;
			if (id === null) continue;
			const row = this.byId.get(id);
			if (row && this.live(row)) continue;
			this.sessions.delete(s);
			const why = !row || row.revokedAt ? `token ${id} was revoked` : `token ${id} expired`;
			this.log("closing a session whose credential ended", { token: id, why });
			s.close(why);
		}
	}

	private async reload(): Promise<void> {
		const load = this.store.tokens.load;
		if (!load || this.reloading) return;
		this.reloading = true;
		try {
			const rows = await load.call(this.store.tokens);
			this.byId = new Map(rows.map((r) => [r.id, r]));
			this.closeDead();
		} catch (err) {
			this.log("reloading tokens failed", { err: String(err) });
		} finally {
			this.reloading = false;
		}
	}
}

function view(t: TokenRow): TokenView {
	return {
		id: t.id,
		role: t.role,
		name: t.name,
		hive: t.hive,
		createdAt: t.createdAt,
		expiresAt: t.expiresAt,
		revokedAt: t.revokedAt,
		enrolledBy: t.enrolledBy,
	};
}
