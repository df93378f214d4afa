import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { LOG_WINDOW } from "@apiary/protocol";
import type { Registry } from "./registry.ts";
import type { CommandBody, CommandFlow, CommandOptions, CommandReply, HiveSocketServer } from "./socket.ts";

// Any queen answers for any hive (several queens on one PostgreSQL): a command
// for a hive connected to another queen is forwarded to that queen over HTTP
// (POST /v1/hives/:id/commands, which it runs on its own socket, never
// forwarding again), as Nomad forwards a node's RPCs through the server the
// node is connected to. HTTP rather than rows in PostgreSQL: a log relay is a
// byte stream with TCP's backpressure end to end, and spawn and stop answer in
// one round trip instead of two commits and two notifications. The queens
// find each other through their rows (each writes the address it serves on)
// and forward the caller's own credential (Nomad forwards the request's ACL
// token the same way), or the fleet's --token-file when it has none.

/** What the placer and the routes send commands through: this queen's socket, or the hive's queen. */
export interface HiveCommander {
	command(hiveId: string, cmd: CommandBody, o?: CommandOptions): Promise<CommandReply>;
	/** Placeable now: connected to this queen, or ready on another live one. */
	isConnected(hiveId: string): boolean;
}

export interface QueenLocator {
	/** The live queen, not this one, the hive is connected to; null when none is. */
	queenUrlOf(hiveId: string): Promise<string | null>;
}

export class HiveCommands implements HiveCommander {
	private readonly sockets: HiveSocketServer;
	private readonly registry: Registry;
	private readonly locator: QueenLocator | null;
	private readonly token: string | null;
	private readonly ca: Buffer | undefined;

	constructor(sockets: HiveSocketServer, registry: Registry, locator: QueenLocator | null, token: string | null, ca?: Buffer) {
		this.sockets = sockets;
		this.registry = registry;
		this.locator = locator;
		this.token = token;
		this.ca = ca;
	}

	isConnected(hiveId: string): boolean {
		if (this.sockets.isConnected(hiveId)) return true;
		// Another queen's hive: its state is that queen's, read back from the database.
		return this.locator !== null && this.registry.getHive(hiveId)?.state === "ready";
	}

	async command(hiveId: string, cmd: CommandBody, o: CommandOptions = {}): Promise<CommandReply> {
		if (this.sockets.isConnected(hiveId) || !this.locator) return this.sockets.command(hiveId, cmd, o);
		let url: string | null;
		try {
			url = await this.locator.queenUrlOf(hiveId);
		} catch (err) {
			return { status: 503, error: `hive ${hiveId}: cannot look up its queen: ${(err as Error).message}` };
		}
		if (!url) return this.sockets.command(hiveId, cmd, o); // connected to no live queen: the socket says so
		// The caller's credential when there is one (the other queen checks it as this one did), else the fleet's.
		return forward(url, hiveId, cmd, o, o.auth ?? (this.token ? `Bearer ${this.token}` : null), this.ca);
	}
}

/**
 * The command sent to the queen at `base`, with the same answer shape as a
 * local one: spawn and stop as that queen's envelope of the hive's reply, logs
 * as a stream whose pace the reader sets (past its credit the response is not read).
 */
function forward(base: string, hiveId: string, cmd: CommandBody, o: CommandOptions, auth: string | null, ca?: Buffer): Promise<CommandReply> {
	const url = new URL(`/v1/hives/${encodeURIComponent(hiveId)}/commands`, base);
	const payload = JSON.stringify(cmd);
	const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) };
	if (auth) headers.authorization = auth;
	const relayed = (why: string) => `hive ${hiveId} (through its queen at ${base}): ${why}`;
	return new Promise<CommandReply>((resolve) => {
		let done = false;
		const settle = (r: CommandReply) => {
			if (done) return;
			done = true;
			if (timer) clearTimeout(timer);
			resolve(r);
		};
		const request = url.protocol === "https:" ? httpsRequest : httpRequest;
		const req = request(url, { method: "POST", headers, ...(ca ? { ca } : {}) }, (res) => onResponse(res));
		const timer = o.timeoutMs
			? setTimeout(() => {
					req.destroy();
					settle({ status: 504, error: relayed(`no answer in ${o.timeoutMs} ms`) });
				}, o.timeoutMs)
			: null;
		o.signal?.addEventListener(
			"abort",
			() => {
				req.destroy();
				settle({ status: 499, error: "cancelled" });
			},
			{ once: true },
		);
		// Sent, and maybe run: the caller treats 503 as "may have happened" (a keyed retry finds out).
		req.on("error", (err) => settle({ status: 503, error: relayed(`the relay failed: ${err.message}`) }));
		req.end(payload);

		const onResponse = (res: IncomingMessage) => {
			const status = res.statusCode ?? 502;
			if (cmd.op === "logs" && status === 200) {
				// The same credit as from a hive: past it the response is not read (TCP holds the rest back).
				let allowed = LOG_WINDOW;
				let received = 0;
				const flow: CommandFlow = {
					credit: (upTo) => {
						allowed = Math.max(allowed, upTo);
						if (received < allowed) res.resume();
					},
				};
				o.flow?.(flow);
				res.on("data", (b: Buffer) => {
					const room = allowed - received;
					if (b.length > room) {
						res.pause();
						res.unshift(b.subarray(room));
						b = b.subarray(0, room);
					}
					received += b.length;
					if (b.length > 0) o.onChunk?.(b);
				});
				res.on("end", () => settle({ status: 200 }));
				// Cut mid-stream (that queen or the hive went away): the reader's response is cut too.
				res.on("aborted", () => settle({ status: 503, error: relayed("the relay was cut") }));
				res.on("error", () => settle({ status: 503, error: relayed("the relay was cut") }));
				return;
			}
			const chunks: Buffer[] = [];
			let size = 0;
			res.on("data", (b: Buffer) => {
				size += b.length;
				// An answer is a worker's record or an error: bounded, whatever the other end sends.
				if (size > 4 << 20) req.destroy();
				else chunks.push(b);
			});
			res.on("error", () => settle({ status: 503, error: relayed("the answer was cut") }));
			res.on("end", () => {
				let body: { status?: number; body?: unknown; error?: string; message?: string } = {};
				try {
					body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
				} catch {
					// Not JSON (a proxy's page): the status line says what happened.
				}
				// 200 carries the hive's own reply; anything else is that queen's refusal of the relay.
				if (status === 200 && cmd.op !== "logs" && typeof body.status === "number") settle({ status: body.status, body: body.body, error: body.error });
				else settle({ status, error: relayed(body.message ?? `${status} ${res.statusMessage ?? ""}`.trim()) });
			});
		};
	});
}
