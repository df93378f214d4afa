import { readFileSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { join } from "node:path";
import { makeCerts } from "@apiary/test-support/certs";
import { FAKE_SMI, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, pct, r3 } from "../lib.ts";
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
		log(`   queen CPU per heartbeat: WS ${r3(ws1)} / ${r3(ws2)} ms, WSS ${r3(wss)} ms: ${r3(ratio)}× (goal ≤ 1.2×)`);
		// Placement, POST → 201 (the hive spawned it), over HTTPS + WSS against plain, in the same run.
		const n = ctx.quick ? 5 : 200;
		const plain = await placements(dir, n, null);
		const secure = await placements(dir, n, certs);
		const p99Ratio = pct(secure, 99) / pct(plain, 99);
		log(
			`   ${n} placements, POST → 201: plain p50 ${r3(pct(plain, 50))} ms, p99 ${r3(pct(plain, 99))} ms; TLS p50 ${r3(pct(secure, 50))} ms, p99 ${r3(pct(secure, 99))} ms: p99 ${r3(p99Ratio)}×`,
		);
		ctx.results.tls = {
			hives,
			seconds,
			wsMsPerHeartbeat: [r3(ws1), r3(ws2)],
			wssMsPerHeartbeat: r3(wss),
			ratio: r3(ratio),
			placement: {
				n,
				plainP50Ms: r3(pct(plain, 50)),
				plainP99Ms: r3(pct(plain, 99)),
				tlsP50Ms: r3(pct(secure, 50)),
				tlsP99Ms: r3(pct(secure, 99)),
				p99Ratio: r3(p99Ratio),
			},
		};
	} finally {
		removeDir(dir);
	}
}

/** `n` placements one after another on a fresh queen and hive (TLS with `certs`), each timed POST → 201, over one kept-alive connection as a scheduler holds it. */
async function placements(dir: string, n: number, certs: { cert: string; key: string; ca: string } | null): Promise<number[]> {
	const tag = certs ? "tls" : "plain";
	const root = newCgroupRoot();
	const queen = await startQueen({
		db: join(dir, `place-${tag}.db`),
		staleAfter: "10s",
		evictAfter: "300s",
		extra: certs ? ["--tls-cert", certs.cert, "--tls-key", certs.key] : [],
	});
	const hive = await startHive({
		queen: queen.url,
		name: `place-${tag}`,
		stateDir: join(dir, `hive-${tag}`),
		cgroupRoot: root,
		interval: "1s",
		nvidiaSmi: FAKE_SMI("a100x8-idle"),
		extra: certs ? ["--ca", certs.ca] : [],
	});
	const ca = certs ? readFileSync(certs.ca) : undefined;
	const agent = certs ? new HttpsAgent({ keepAlive: true, ca }) : new HttpAgent({ keepAlive: true });
	const post = (body: object) =>
		new Promise<number>((resolve, reject) => {
			const payload = JSON.stringify(body);
			const req = (certs ? httpsRequest : httpRequest)(
				`${queen.url}/v1/workers`,
				{ method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } },
				(res) => {
					res.resume();
					res.on("end", () => resolve(res.statusCode ?? 0));
				},
			);
			req.on("error", reject);
			req.end(payload);
		});
	try {
		// Ready: the hive joined and the first placement lands.
		for (let i = 0; i < 200 && (await post({ id: `warm-${i}`, command: ["true"], waitMs: 100 })) !== 201; i++) await new Promise((r) => setTimeout(r, 100));
		const times: number[] = [];
		for (let i = 0; i < n; i++) {
			const t0 = performance.now();
			const status = await post({ id: `p${i}`, command: ["true"] });
			if (status !== 201) throw new Error(`placement ${i} (${tag}): ${status}`);
			times.push(performance.now() - t0);
		}
		return times;
	} finally {
		agent.destroy();
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
	}
}
