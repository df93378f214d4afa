import { convertFlag } from "./cli.ts";
import { failure, open } from "./client.ts";

// A worker's output for the CLIs (`hive logs`, `queen logs`): the same flags,
// the same query, the same streaming to stdout.

/** `-f` and `-n N` as the logs route's query; a bad N is a usage error naming the flag. */
export function logsQuery(cmd: string, v: { follow?: boolean; tail?: string }): URLSearchParams {
	const tail = convertFlag(cmd, "tail", v.tail, (x) => {
		if (!/^\d{1,6}$/.test(x)) throw new Error(`expected a number of lines, got ${JSON.stringify(x)}`);
		return x;
	});
	const q = new URLSearchParams();
	if (v.follow) q.set("follow", "true");
	if (tail !== undefined) q.set("tail", tail);
	return q;
}

/** Streams a worker's log to `out` as it arrives; an error answer is thrown with the daemon's message. */
export async function printLogs(base: string, id: string, q: URLSearchParams, token: string | null, out: (s: string) => void): Promise<void> {
	const res = await open(base, "GET", `/v1/workers/${id}/logs${q.size ? `?${q}` : ""}`, undefined, token);
	if ((res.statusCode ?? 0) >= 300) throw await failure(res);
	const decoder = new TextDecoder();
	try {
		for await (const chunk of res) out(decoder.decode(chunk as Uint8Array, { stream: true }));
	} catch (err) {
		throw new Error("the log stream was cut before its end (its hive, or the queen relaying it, went away)", { cause: err });
	}
}
