import { heartbeatPace, pacedLiveness } from "./heartbeat-pace.ts";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { randomUUID } from "node:crypto";
import { type CommandMessage, HIVE_MESSAGES, type HiveMessage, ProtocolError, type QueenMessage, type ReplyMessage } from "@apiary/protocol";
import { Ajv, type ValidateFunction } from "ajv";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import { authorize, certificatePrincipal, mayBeHive, type Principal } from "./auth/authorize.ts";
import type { Auditor } from "./auth/audit.ts";
import type { Credentials } from "./auth/credentials.ts";
import { Intake } from "./intake.ts";
import { type Registry, StoreError } from "./registry.ts";

// Close codes: 1007 malformed JSON, 1008 a message that breaks the protocol
// (with the field named in the reason), 1009 too big (ws enforces maxPayload),
// 1013 the queen's store is failing (back off), 4000 replaced by a newer
// connection of the same hive, 4409 the hive id is held by another live hive.

// Each message's validator is compiled from its one declaration in
// @apiary/protocol (wire.ts); ajv's messages name the field.
const ajv = new Ajv({ allErrors: false });
const validators: Record<string, ValidateFunction> = Object.fromEntries(Object.entries(HIVE_MESSAGES).map(([k, s]) => [k, ajv.compile(s)]));

/**
 * A heartbeat or bye is told by its first characters, without parsing it (the
 * hive and the simulator write `type` first). One not written so is taken for
 * a spawn or exit: it goes sooner, never wrongly later.
 */
const HEARTBEAT = '{"type":"heartbeat"';
const BYE = '{"type":"bye"';

/** A command's answer as the caller gets it: the hive's reply, or what the queen saw instead (503 gone, 504 no answer). */
export type CommandReply = Pick<ReplyMessage, "status" | "body" | "error">;

interface Pending {
	resolve: (r: CommandReply) => void;
	onChunk?: (b: Buffer) => void;
	timer: NodeJS.Timeout | null;
}

/** Flow control of a running `logs` command: the hive may send `upTo` bytes in all (LOG_WINDOW before any credit). */
export interface CommandFlow {
	credit(upTo: number): void;
}

export interface CommandOptions {
	/** No reply in this long: 504. */
	timeoutMs?: number;
	/** A `logs` command's output, in order. */
	onChunk?: (b: Buffer) => void;
	/** Cancels: the hive stops, the reply is 499. */
	signal?: AbortSignal;
	/** Given the command's flow control once it is sent. */
	flow?: (f: CommandFlow) => void;
	/** Relayed to another queen: the caller's own Authorization, so that queen checks the same credential. */
	auth?: string;
}

export type CommandBody = CommandMessage extends infer C ? (C extends CommandMessage ? Omit<C, "id" | "type"> : never) : never;

/** Close code: the queen cannot store what the hive sends (its disk is full…): retry later, backing off. */
export const CLOSE_STORE_FAILING = 1013;

/** Close code: this credential may not speak for that hive (another hive's, a taken enrolment), or it was revoked. */
export const CLOSE_NOT_THIS_HIVE = 4403;

/** Close code: the hive id asked for is held by another live hive. */
export const CLOSE_ID_TAKEN = 4409;

export interface HiveSocketOptions {
	registry: Registry;
	credentials: Credentials;
	/** Refused sockets (a bad credential, an impersonation) are audit records. */
	auditor?: Auditor;
	maxPayload: number;
	staleAfterMs: number;
	log: (msg: string, extra?: object) => void;
	/** Each heartbeat applied, the ms it took, and whether the pace governs it (a connection's first is sent on connect whatever the pace). */
	onHeartbeat?: (ms: number, paced: boolean) => void;
	/** The store's durability (PostgreSQL): a heartbeat or exit record is acked only once committed. */
	durable?: () => Promise<void>;
	/** Several queens: resolves once every event committed so far is read back (before a hive's first snapshot is judged). */
	catchUp?: () => Promise<void>;
	/** --tls-client-ca: a verified client certificate whose CN is a hive id is that hive's credential. */
	clientCerts?: boolean;
	/** --max-heartbeats-per-second: this queen's hives are told to send heartbeats no faster than keeps them under it. */
	maxHeartbeatsPerSecond?: number;
}

/** The hive ↔ queen socket on the queen side: ws://QUEEN/v1/hives/connect. */
export class HiveSocketServer {
	private readonly wss: WebSocketServer;
	private readonly o: HiveSocketOptions;
	/** The live connection of each hive id, with what tells a reconnect from an impostor. */
	private readonly byHive = new Map<
		string,
		{
			ws: WebSocket;
			instanceId: string;
			remote: string;
			lastMessage: number;
			pending: Map<string, Pending>;
			/** The interval it is judged by: what it was told in its welcome or an ack. */
			paceMs: number;
			/** A shorter one told since in a `pace` message; judged by once the hive speaks again (a longer one is judged by at once). */
			pushedMs?: number;
		}
	>();

	/** The intake hives are paced to: --max-heartbeats-per-second, lowered by the governor while the queen is busy. */
	private target: number;

	/** Hive messages waiting their turn (intake.ts): heartbeats in slices, lifecycle messages first. */
	readonly intake: Intake<WebSocket>;

	/** The heartbeat interval this queen tells its hives now (0: each hive's own tick). */
	private pace(): number {
		return heartbeatPace(this.byHive.size, this.target);
	}

	/** A new target (the governor's): each hive is told its new interval in its next ack. */
	setHeartbeatTarget(perSecond: number): void {
		this.target = perSecond;
	}

	get heartbeatTarget(): number {
		return this.target;
	}

	/** The pace for this hive's ack, when it differs from what the hive was last told (and the registry judges it by). */
	private retold(hiveId: string): { heartbeatMs?: number } {
		const held = this.byHive.get(hiveId);
		if (!held) return {};
		const pace = this.pace();
		// What the hive sends at now: a `pace` message since its last ack, or that ack's.
		const sending = held.pushedMs ?? held.paceMs;
		held.pushedMs = undefined;
		if (held.paceMs !== pace) {
			held.paceMs = pace;
			this.o.registry.setPace(hiveId, pace);
		}
		return sending === pace ? {} : { heartbeatMs: pace };
	}

	/**
	 * Tells each hive whose interval is now longer than the queen needs by a
	 * second or more (hives left, the target rose) its new one at once: its
	 * next ack may be one long interval away (23 s after a surge, in the
	 * bench). It is judged by the longer interval until it next speaks, so the
	 * news does not make a hive that was silent as told stale. A hive whose
	 * interval is now at least double (and a second longer) is told at once
	 * too: the target is cut when the queen is behind, and then the ack that
	 * would tell it waits behind the backlog it is meant to relieve (at 5,000
	 * hives over three queens, 15,000–18,000 messages waited 19 s while the
	 * hives went on at the interval that made them). It is judged by the
	 * longer one at once, the more lenient.
	 */
	retell(): void {
		const pace = this.pace();
		const message = JSON.stringify({ type: "pace", heartbeatMs: pace } satisfies QueenMessage);
		for (const [hiveId, held] of this.byHive) {
			if (held.paceMs < 0) continue;
			const sending = held.pushedMs ?? held.paceMs;
			if (sending - pace >= 1000) held.pushedMs = pace;
			else if (pace - sending >= 1000 && pace >= 2 * sending) {
				if (pace >= held.paceMs) {
					held.paceMs = pace;
					held.pushedMs = undefined;
					this.o.registry.setPace(hiveId, pace);
				} else held.pushedMs = pace; // still shorter than what it is judged by until it speaks
			} else continue;
			held.ws.send(message);
		}
	}

	/** How long a hive told to send every `paceMs` stays ready while silent. */
	private staleAfterFor(paceMs: number): number {
		return pacedLiveness({ staleAfterMs: this.o.staleAfterMs, evictAfterMs: 0 }, paceMs).staleAfterMs;
	}

	constructor(o: HiveSocketOptions) {
		this.o = o;
		this.target = o.maxHeartbeatsPerSecond ?? 0;
		this.intake = new Intake<WebSocket>({
			onError: (err) => o.log("hive message failed", { err: String(err) }),
			// A hive whose messages pile up is read no further until they are applied: TCP pushes back on it.
			pause: (ws) => ws.pause(),
			resume: (ws) => ws.resume(),
		});
		this.wss = new WebSocketServer({ noServer: true, maxPayload: o.maxPayload });
		// A hive declared lost has its socket dropped (terminated: a partition lets no close handshake
		// through). Its connection may still be open at the TCP level, and on it the hive would go on
		// sending packed stats of workers the queen evicted; reconnecting, it says hello and describes
		// each worker in full again, so those still running are shown again with their GPUs.
		o.registry.events.watch((batch) => {
			for (const e of batch) {
				if (e.type !== "hive.lost" || !e.hiveId) continue;
				const held = this.byHive.get(e.hiveId);
				if (held) setImmediate(() => held.ws.terminate());
			}
		});
	}

	handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
		const url = new URL(req.url ?? "/", "http://x");
		if (url.pathname !== "/v1/hives/connect") {
			socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
			return;
		}
		const creds = this.o.credentials;
		// A token decides when one is given; else a verified client certificate naming a hive.
		const tlsSocket = req.socket as TLSSocket;
		const fromCert = this.o.clientCerts && tlsSocket.encrypted ? certificatePrincipal(tlsSocket.authorized, tlsSocket.getPeerCertificate()) : null;
		void creds.resolveFresh(req.headers.authorization).then((byToken) => {
			const principal = req.headers.authorization ? byToken : fromCert;
			// The socket is the hive role's (and an admin's, as the one shared token was before roles).
			const d = authorize(principal, "hive", creds.authOn);
			const admin = principal?.role === "admin";
			if (!d.ok && !admin) {
				const status = d.ok ? 403 : d.status;
				const body = JSON.stringify({ statusCode: status, error: status === 401 ? "Unauthorized" : "Forbidden", message: d.ok ? "" : d.message });
				this.o.log("hive socket refused", { remote: req.socket.remoteAddress, status, why: d.ok ? "" : d.message });
				this.o.auditor?.record({
					principal,
					remote: req.socket.remoteAddress ?? null,
					op: "hive socket",
					target: null,
					outcome: status,
					detail: d.ok ? null : d.message,
				});
				socket.end(
					`HTTP/1.1 ${status} ${status === 401 ? "Unauthorized" : "Forbidden"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
				);
				return;
			}
			this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, req.socket.remoteAddress ?? "unknown", principal));
		});
	}

	private serve(ws: WebSocket, remote: string, principal: Principal | null): void {
		let hiveId: string | null = null;
		let untrack: (() => void) | null = null;
		ws.once("close", () => {
			untrack?.();
			// Its bye and exits still count, in their turn; its waiting heartbeats are dropped (it sends its state again on reconnect).
			this.intake.close(ws);
		});
		let fresh = true;
		let heartbeatOffered = false;
		const send = (m: QueenMessage) => ws.send(JSON.stringify(m));
		const reject = (code: number, reason: string) => {
			this.o.log("hive socket closed on bad input", { hiveId, code, reason });
			ws.close(code, reason.slice(0, 120));
		};
		/**
		 * Several queens: a hive's first message (its hello) and what follows it wait, in order, until
		 * this queen has read every event committed so far. What it knows of the hive is then what the
		 * other queens recorded, so its first snapshot is judged against that: a worker whose exit another
		 * queen logged while this one could not read the log is not taken for one that vanished.
		 */
		let caughtUp = !this.o.catchUp;
		let waiting: (string | null)[] | null = null;
		// Decoded as it arrives (null: a binary frame, refused in its turn). ws hands over a slice of the
		// socket's read (up to 64 KB), and a message that waited (catch-up, the intake) kept that whole read
		// alive: ~870 MB of them in one queen of the 10,000-hive run (docs/BENCHMARKS.md row 17).
		const onMessage = (data: RawData, isBinary: boolean): void => receive(isBinary ? null : data.toString());
		const receive = (text: string | null): void => {
			if (waiting) {
				waiting.push(text);
				return;
			}
			if (!caughtUp) {
				caughtUp = true;
				const held = [text];
				waiting = held;
				// Not read on meanwhile: what the hive sends waits in TCP, not in this queen's memory.
				ws.pause();
				void this.o.catchUp!()
					.catch(() => {
						// Cut off from the database: nothing can be acked anyway (the hive moves on); go on as before.
					})
					.finally(() => {
						waiting = null;
						ws.resume();
						for (const m of held) if (ws.readyState === ws.OPEN) receive(m);
					});
				return;
			}
			// Heard when it arrives, not when its turn comes: the queen's backlog is not the hive's silence.
			if (hiveId) {
				const held = this.byHive.get(hiveId);
				if (held?.ws === ws) {
					held.lastMessage = performance.now();
					this.o.registry.heard(hiveId);
				}
			}
			// Heartbeats and byes wait their turn; a bye is kept if the socket closes first, a heartbeat is not.
			const heartbeat = hiveId !== null && text !== null && text.startsWith(HEARTBEAT);
			const bye = hiveId !== null && text !== null && !heartbeat && text.startsWith(BYE);
			// Marked: a heartbeat after the connection's first, which the hive sends on connect whatever its pace.
			this.intake.offer(ws, heartbeat || bye, () => handle(text), {
				kept: !heartbeat,
				marked: heartbeat && heartbeatOffered,
				bytes: text?.length ?? 0,
			});
			if (heartbeat) heartbeatOffered = true;
		};
		ws.on("message", onMessage);
		const handle = (text: string | null) => {
			// A heartbeat's cost, parse and validation included, is what the governor weighs.
			const t0 = performance.now();
			if (text === null) return reject(1003, "binary messages are not accepted");
			let m: HiveMessage;
			try {
				m = JSON.parse(text);
			} catch {
				// The error is the close code and reason the hive gets.
				return reject(1007, "malformed JSON");
			}
			const type = (m as { type?: unknown })?.type;
			const validate = typeof type === "string" ? validators[type] : undefined;
			if (!validate) return reject(1008, `unknown message type ${JSON.stringify(type)}`);
			if (!hiveId && type !== "hello") return reject(1008, "the first message must be hello");
			if (!validate(m)) {
				const e = validate.errors![0]!;
				return reject(1008, `${type}${e.instancePath.replaceAll("/", ".")} ${e.message}`);
			}
			try {
				if (m.type === "hello") {
					if (hiveId) return reject(1008, "hello sent twice");
					// A hive is only itself (NodeRestriction): its credential must speak for the id it claims.
					const creds = this.o.credentials;
					const may = mayBeHive(principal, m.hiveId, creds.authOn);
					if (!may.ok) {
						this.o.log("hive impersonation refused", { remote, claimed: m.hiveId, why: may.why, token: principal?.tokenId ?? null });
						this.o.auditor?.record({ principal, remote, op: "hive socket", target: `hive ${m.hiveId}`, outcome: CLOSE_NOT_THIS_HIVE, detail: may.why });
						return reject(CLOSE_NOT_THIS_HIVE, `refused as hive ${m.hiveId}: ${may.why}`);
					}
					let credential: string | undefined;
					if (creds.authOn && principal?.role === "hive" && principal.hive === null) {
						// An enrolment token: the hive gets a secret of its own, bound to its id, this once.
						const e = creds.enrol(principal, m.hiveId);
						if (!e.ok) {
							this.o.log("hive enrolment refused", { remote, claimed: m.hiveId, why: e.why });
							this.o.auditor?.record({ principal, remote, op: "hive enrolment", target: `hive ${m.hiveId}`, outcome: CLOSE_NOT_THIS_HIVE, detail: e.why });
							return reject(CLOSE_NOT_THIS_HIVE, `refused as hive ${m.hiveId}: ${e.why}`);
						}
						credential = e.credential;
						this.o.auditor?.record({
							principal,
							remote,
							op: "hive enrolment",
							target: `hive ${m.hiveId}`,
							outcome: 200,
							detail: `token ${e.principal.tokenId}`,
						});
						principal = e.principal;
					}
					if (principal) untrack = creds.track(principal, (why) => ws.close(CLOSE_NOT_THIS_HIVE, why.slice(0, 120)));
					const prev = this.byHive.get(m.hiveId);
					if (prev && prev.ws !== ws) {
						// A hive id is held by one live hive at a time. The same hive
						// (same instance) reconnecting replaces its old connection, as
						// does anyone once the holder has been silent past stale-after
						// (a half-open socket of a hive that died); another live hive
						// with the same name is refused, and so never fights it.
						const silentMs = performance.now() - prev.lastMessage;
						if (prev.instanceId !== m.instanceId && silentMs <= this.o.staleAfterMs) {
							return reject(CLOSE_ID_TAKEN, `hive id ${m.hiveId} is held by a live hive at ${prev.remote}; give this one another --name`);
						}
						prev.ws.close(4000, "replaced by a newer connection");
					}
					hiveId = m.hiveId;
					// paceMs -1: never told, so the first pace is told (and set at the registry) whatever it is.
					this.byHive.set(hiveId, { ws, instanceId: m.instanceId, remote, lastMessage: performance.now(), pending: new Map(), paceMs: -1 });
					this.o.registry.hello(m);
					const pace = this.retold(hiveId).heartbeatMs!;
					send({
						type: "welcome",
						staleAfterMs: this.staleAfterFor(pace),
						heartbeatMs: pace,
						...(credential ? { credential } : {}),
					});
					return;
				}
				if (!hiveId) return reject(1008, "the first message must be hello"); // unreachable: checked before validation
				if (m.type === "heartbeat") {
					if (m.snapshot.hiveId !== hiveId) return reject(1008, "heartbeat.snapshot.hiveId does not match hello");
					this.o.registry.heartbeat(hiveId, m, fresh);
					this.o.onHeartbeat?.(performance.now() - t0, !fresh);
					fresh = false;
					const id = hiveId;
					this.acked(ws, () => send({ type: "ack", seq: m.seq, ...this.retold(id) }));
				} else if (m.type === "event") {
					this.o.registry.workerEvent(hiveId, m);
					const id = hiveId;
					this.acked(ws, () => send({ type: "ack", seq: m.seq, ...this.retold(id) }));
				} else if (m.type === "reply" || m.type === "log") {
					const p = this.byHive.get(hiveId)?.pending.get(m.id);
					if (!p) return; // answered already (timed out, cancelled): nothing waits for it
					if (m.type === "log") p.onChunk?.(Buffer.from(m.data, "base64"));
					else this.settle(hiveId, m.id, { status: m.status, body: m.body, error: m.error });
				} else if (m.type === "bye") {
					// Applied in its turn, perhaps after its socket closed: a newer connection of the hive (it came back) outranks it.
					const holder = this.byHive.get(hiveId);
					if (holder && holder.ws !== ws) return;
					this.o.registry.bye(hiveId);
					ws.close(1000, "bye");
				}
			} catch (err) {
				if (err instanceof ProtocolError) return reject(1008, `${type}: ${err.message}`);
				// Nothing the hive sent is wrong; this queen cannot store it: the hive backs off (1013 Try Again Later)
				// rather than reconnecting at once into the same failure.
				if (err instanceof StoreError) return reject(CLOSE_STORE_FAILING, `the queen's store failed (${err.statusCode}); back off and retry`);
				this.o.log("hive message failed", { hiveId, err: String(err) });
				reject(1011, `internal error: ${(err as Error).message}`);
			}
		};
		ws.on("close", () => {
			const held = hiveId ? this.byHive.get(hiveId) : undefined;
			if (hiveId && held?.ws === ws) {
				// Commands in flight get a clear failure; the next hello and heartbeat reconcile what the hive did.
				for (const id of [...held.pending.keys()]) this.settle(hiveId, id, { status: 503, error: `hive ${hiveId} disconnected before answering` });
				this.byHive.delete(hiveId);
				this.o.registry.disconnected(hiveId);
			}
		});
		ws.on("error", () => {});
	}

	isConnected(hiveId: string): boolean {
		const held = this.byHive.get(hiveId);
		if (!held) return false;
		// Silent for twice stale-after, the socket is half-open: a partition, or a hive that gave up on this
		// queen and went to another (its close never arrived). Dropped, so commands go where the hive is now.
		if (performance.now() - held.lastMessage > 2 * this.staleAfterFor(held.paceMs)) {
			this.o.log("dropping a silent hive socket", { hiveId, silentMs: Math.round(performance.now() - held.lastMessage) });
			held.ws.terminate();
			return false;
		}
		return true;
	}

	/**
	 * Sends a command to a hive and waits for its reply; log chunks go to
	 * `onChunk`. Never throws for what the hive does: a hive that is not
	 * connected, goes away (503) or does not answer in time (504) is a reply.
	 * `signal` cancels (the hive stops, the reply is 499).
	 */
	command(hiveId: string, cmd: CommandBody, o: CommandOptions = {}): Promise<CommandReply> {
		const held = this.isConnected(hiveId) ? this.byHive.get(hiveId) : undefined;
		if (!held) return Promise.resolve({ status: 503, error: `hive ${hiveId} is not connected to this queen` });
		const id = randomUUID();
		return new Promise((resolve) => {
			const timer = o.timeoutMs
				? setTimeout(() => this.settle(hiveId, id, { status: 504, error: `hive ${hiveId} did not answer in ${o.timeoutMs} ms` }), o.timeoutMs)
				: null;
			held.pending.set(id, { resolve, onChunk: o.onChunk, timer });
			o.signal?.addEventListener("abort", () => {
				if (!held.pending.has(id)) return;
				held.ws.send(JSON.stringify({ type: "cancel", id } satisfies QueenMessage));
				this.settle(hiveId, id, { status: 499, error: "cancelled" });
			});
			held.ws.send(JSON.stringify({ type: "command", id, ...cmd } as QueenMessage));
			o.flow?.({
				credit: (upTo) => {
					if (held.pending.has(id)) held.ws.send(JSON.stringify({ type: "credit", id, upTo } satisfies QueenMessage));
				},
			});
		});
	}

	/** Acks once the change is durable: a hive keeps an exit record until acked, so none is lost with a queen. */
	private acked(ws: WebSocket, ack: () => void): void {
		const durable = this.o.durable;
		if (!durable) {
			ack();
			return;
		}
		durable().then(ack, (err) => {
			this.o.log("cannot ack: the store failed", { err: String(err) });
			ws.close(1011, "the queen's store failed");
		});
	}

	private settle(hiveId: string, id: string, r: CommandReply): void {
		const held = this.byHive.get(hiveId);
		const p = held?.pending.get(id);
		if (!held || !p) return;
		held.pending.delete(id);
		if (p.timer) clearTimeout(p.timer);
		p.resolve(r);
	}

	get connections(): number {
		return this.byHive.size;
	}

	close(): void {
		for (const ws of this.wss.clients) ws.terminate();
		this.wss.close();
	}
}
