import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makeCerts } from "@apiary/test-support/certs";
import { removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, r3 } from "../lib.ts";
import { drive } from "./ingest.ts";

// TLS (issue #27): the queen's CPU per heartbeat over WSS against WS, in the
// same run: N simulated hives × 50 workers at 1 Hz, WS, WSS, WS again, each
// on a fresh queen; the ratio is WSS over the mean of the WS runs either side
// (goal ≤ 1.2×). The certificate is an ECDSA P-256 one from Debian's openssl.
export async function tls() {
	const hives = ctx.quick ? 5 : 300;
	const seconds = ctx.quick ? 1 : 8;
	const dir = tempDir("bench-tls");
	try {
		const certs = makeCerts(dir, "queen");
		const ca = readFileSync(certs.ca);
		const run = async (secure: boolean, i: number) => {
			const queen = await startQueen({
				db: join(dir, `q${i}.db`),
				staleAfter: "30s",
				evictAfter: "300s",
				extra: secure ? ["--tls-cert", certs.cert, "--tls-key", certs.key] : [],
			});
			try {
				const r = await drive(queen.url, queen.proc.pid!, hives, seconds, true, ctx.quick ? 0 : 2, undefined, secure ? ca : undefined);
				return r.cpuMs / r.sent;
			} finally {
				await queen.stop();
			}
		};
		const ws1 = await run(false, 1);
		const wss = await run(true, 2);
		const ws2 = await run(false, 3);
		const ratio = wss / ((ws1 + ws2) / 2);
		const out = { hives, seconds, wsMsPerHeartbeat: [r3(ws1), r3(ws2)], wssMsPerHeartbeat: r3(wss), ratio: r3(ratio) };
		log(`   queen CPU per heartbeat: WS ${r3(ws1)} / ${r3(ws2)} ms, WSS ${r3(wss)} ms: ${r3(ratio)}× (goal ≤ 1.2×)`);
		ctx.results.tls = out;
	} finally {
		removeDir(dir);
	}
}
