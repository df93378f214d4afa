import type { IncomingMessage, request as Request } from "node:http";
import { createRequire } from "node:module";
import { loadCa } from "./listen.ts";

// A small HTTP client for the CLIs: JSON in and out, errors as messages.
// Built on node:http rather than fetch: fetch loads undici, which alone
// costs a client command more than its whole run (docs/BENCHMARKS.md, CLI).
// And through require: an ESM import of node:http builds a facade of all its
// exports, whose lazy ones load undici all the same.
const require = createRequire(import.meta.url);

export class ClientError extends Error {
	override name = "ClientError";
	/** The daemon's HTTP status; 0 when it could not be reached. */
	readonly status: number;
	constructor(status: number, message: string, options?: ErrorOptions) {
		super(message, options);
		this.status = status;
	}
}

/** "cannot reach URL: ECONNREFUSED …" from a failed request, keeping the cause. */
export function unreachable(base: string, err: unknown): ClientError {
	const e = err as Error & { cause?: Error };
	return new ClientError(0, `cannot reach ${base}: ${e.cause?.message ?? e.message}`, { cause: err });
}

/** Sends one request and resolves with the response (its body not yet read). */
export async function open(base: string, method: string, path: string, body?: unknown, token?: string | null, signal?: AbortSignal): Promise<IncomingMessage> {
	const url = new URL(path, base);
	const { request } = require(url.protocol === "https:" ? "node:https" : "node:http") as { request: typeof Request };
	// https: the daemon's certificate is checked against APIARY_CA (or --ca, which the commands set it from), else the system's CAs.
	const ca = url.protocol === "https:" ? loadCa(undefined) : undefined;
	const payload = body === undefined ? undefined : JSON.stringify(body);
	const headers: Record<string, string> = {};
	if (payload !== undefined) {
		headers["content-type"] = "application/json";
		headers["content-length"] = String(Buffer.byteLength(payload));
	}
	if (token) headers.authorization = `Bearer ${token}`;
	return new Promise((resolve, reject) => {
		const req = request(url, { method, headers, ...(ca ? { ca } : {}), ...(signal ? { signal } : {}) }, resolve);
		req.on("error", (err) => reject(unreachable(base, err)));
		req.end(payload);
	});
}

async function text(res: IncomingMessage): Promise<string> {
	const chunks: Buffer[] = [];
	for await (const c of res) chunks.push(c as Buffer);
	return Buffer.concat(chunks).toString("utf8");
}

/** The error a non-2xx answer stands for: the daemon's own message when it sent one. */
export async function failure(res: IncomingMessage): Promise<ClientError> {
	const t = await text(res);
	let message = `${res.statusCode} ${res.statusMessage ?? ""}`.trim();
	try {
		message = (JSON.parse(t) as { message?: string }).message ?? message;
	} catch {
		// Not JSON (a proxy's page, say): the status line is the message.
	}
	// The daemon's 401 says a token is needed; the person needs to know how to give one.
	if (res.statusCode === 401) message += " (give it with --token-file FILE or APIARY_TOKEN)";
	return new ClientError(res.statusCode ?? 0, message);
}

/** A GET's body and the headers that go with it (a paged answer's x-next-cursor). */
export async function callWithHeaders<T>(
	base: string,
	method: string,
	path: string,
	token?: string | null,
): Promise<{ body: T; headers: Record<string, string | undefined> }> {
	const res = await open(base, method, path, undefined, token);
	const status = res.statusCode ?? 0;
	if (status < 200 || status >= 300) throw await failure(res);
	const t = await text(res);
	return { body: (t ? JSON.parse(t) : null) as T, headers: res.headers as Record<string, string | undefined> };
}

export async function call<T>(base: string, method: string, path: string, body?: unknown, token?: string | null): Promise<T> {
	const res = await open(base, method, path, body, token);
	const status = res.statusCode ?? 0;
	if (status < 200 || status >= 300) throw await failure(res);
	const t = await text(res);
	return (t ? JSON.parse(t) : null) as T;
}
