import { simulate } from "@apiary/test-support/fleet-sim";
import { ctx, launchFloor, log, sized } from "../lib.ts";

// 18. The fleet simulator's own cost (issue #23: 10,000 hives on one core):
// the simulator against the transport floor (bench/ws-floor.ts, a child
// process that only parses and acks), so what this process spends is the
// simulator's alone. The floor tells the interval three queens at their
// default --max-heartbeats-per-second (1,000) would tell 10,000 hives:
// hives ÷ 3,000 a second. Measured: the join's CPU seconds and the cores the
// simulator uses once joined, and µs per heartbeat sent and acked.

export async function simulator() {
	const hives = sized(50, 1000, 10_000);
	const paceMs = Math.max(1000, Math.ceil((hives / 3000) * 1000));
	const seconds = sized(2, 5, 20);
	const floor = await launchFloor(paceMs);
	try {
		const r = await simulate({ queens: [floor.url], hives, workers: 50, seconds, churn: 0, gpus: 2, prefix: "c-" });
		const perHb = r.heartbeats.sent ? (r.cpu.windowCores * r.seconds * 1e6) / r.heartbeats.sent : null;
		log(
			`18. simulator: ${hives} hives × 50 workers told ${paceMs} ms: ${r.welcomed}/${hives} welcomed (join ${r.joinMs} ms, ${r.cpu.joinSeconds} CPU s); then ${r.cpu.windowCores} cores for ${r.heartbeats.sent} heartbeats in ${r.seconds} s (${perHb === null ? "–" : Math.round(perHb)} µs each), ${r.heartbeats.acked} acked`,
		);
		ctx.results.simulator = {
			hives,
			paceMs,
			welcomed: r.welcomed,
			joinMs: r.joinMs,
			cpu: r.cpu,
			heartbeats: r.heartbeats,
			seconds: r.seconds,
			usPerHeartbeat: perHb,
		};
	} finally {
		floor.stop();
	}
}
