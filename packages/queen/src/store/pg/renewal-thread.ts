import { parentPort, workerData } from "node:worker_threads";
import pg from "pg";
import type { RenewalData } from "./renewal.ts";

// The thread that renews a queen's row (renewal.ts): while the queen's loop
// has bumped the beat within `stallMs`, every `everyMs` on a connection of
// its own, remade after a failure.

const o = workerData as RenewalData;
const say = (msg: string, extra?: object) => parentPort?.postMessage({ msg, extra });
let client: pg.Client | null = null;
let seen = Atomics.load(o.beat, 0);
let seenAt = performance.now();
let stalled = false;
let renewing = false;

async function renew(): Promise<void> {
	if (!client) {
		const c = new pg.Client({ connectionString: o.connectionString, connectionTimeoutMillis: 5000, keepAlive: true, query_timeout: o.queryTimeoutMs });
		c.on("error", () => {}); // a dropped connection is seen by the next query, which remakes it
		client = c;
		await c.connect();
	}
	await client.query("UPDATE queens SET seen_at = now() WHERE id = $1", [o.queenId]);
}

setInterval(() => {
	const now = performance.now();
	const beat = Atomics.load(o.beat, 0);
	if (beat !== seen) {
		seen = beat;
		seenAt = now;
		if (stalled) say("this queen's loop runs again: its row is renewed again");
		stalled = false;
	} else if (now - seenAt > o.stallMs) {
		if (!stalled)
			say("this queen's loop has stalled: its row is no longer renewed, and the other queens take it for gone", { stalledMs: Math.round(now - seenAt) });
		stalled = true;
		return;
	}
	if (renewing) return;
	renewing = true;
	renew()
		.catch((err: Error) => {
			say("renewing this queen's row failed", { err: err.message });
			void client?.end().catch(() => {});
			client = null;
		})
		.finally(() => {
			renewing = false;
		});
}, o.everyMs);
