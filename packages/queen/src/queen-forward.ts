import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

// A request sent on to another queen (several queens on one PostgreSQL) when
// that queen is the one that can answer it, e.g. a cancel for a run it carries
// on: the caller's credential goes with it, else the fleet's token, as for
// commands relayed to a hive's queen (hive-commands.ts).

/** The other queen's status and JSON body; 503 when it could not be reached, 504 past the timeout. */
export function forwardRequest(
	base: string,
	method: string,
	path: string,
	auth: string | null,
	o: { ca?: Buffer; timeoutMs?: number } = {},
): Promise<{ status: number; body: unknown }> {
	const url = new URL(path, base);
	const headers: Record<string, string> = auth ? { authorization: auth } : {};
	return new Promise((resolve) => {
		let done = false;
		const settle = (status: number, body: unknown) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			resolve({ status, body });
		};
		const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, { method, headers, ...(o.ca ? { ca: o.ca } : {}) }, (res) => {
			const chunks: Buffer[] = [];
			let size = 0;
			res.on("data", (b: Buffer) => {
				size += b.length;
				// An answer is a record or an error: bounded, whatever the other end sends.
				if (size > 4 << 20) req.destroy(new Error("answer over 4 MiB"));
				else chunks.push(b);
			});
			res.on("error", (err) => settle(503, { message: `the answer was cut: ${err.message}` }));
			res.on("end", () => {
				let body: unknown = null;
				try {
					body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
				} catch {
					body = { message: `${res.statusCode} ${res.statusMessage ?? ""}`.trim() };
				}
				settle(res.statusCode ?? 502, body);
			});
		});
		const timer = setTimeout(() => {
			req.destroy();
			settle(504, { message: `no answer in ${o.timeoutMs ?? 30_000} ms` });
		}, o.timeoutMs ?? 30_000);
		req.on("error", (err) => settle(503, { message: `could not reach it: ${err.message}` }));
		req.end();
	});
}
