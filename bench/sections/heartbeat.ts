import { randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import { createDriver, detect } from "../../packages/hive/src/cgroup/detect.ts";
import { GpuSampler } from "../../packages/hive/src/gpu/sampler.ts";
import { Hive } from "../../packages/hive/src/hive.ts";
import { heartbeatGpus, heartbeatWorkers } from "../../packages/hive/src/queen-link.ts";
import { FAKE_SMI, removeDir, tempDir } from "@apiary/test-support/procs";
import { ctx, sleep, log } from "../lib.ts";

// 2. Heartbeat size for 100 workers + 8 GPUs, as the hive sends it.
export async function heartbeat() {
	const n = ctx.quick ? 10 : 100;
	const rootName = `apiary-test-bench-${randomBytes(3).toString("hex")}`;
	const stateDir = tempDir("bench");
	const gpus = new GpuSampler({ binary: FAKE_SMI("a100x8"), intervalMs: 200 });
	const hive = new Hive({ driver: createDriver(detect({ requested: "v1", cgroupRoot: rootName })), stateDir, hiveId: "bench", gpus });
	await hive.start();
	gpus.start();
	try {
		for (let i = 0; i < n; i++)
			await hive.spawn({ id: `shard-${i}`, command: ["sleep", "600"], cpu: 0.5, memoryBytes: 512 << 20, labels: { suite: "e2e", shard: String(i) } });
		for (let i = 0; i < 50 && gpus.status().gpus.length < 8; i++) await sleep(100);
		await hive.tick();
		await sleep(300);
		const snap = await hive.tick();
		// What the queen link sends: every worker in full on the first heartbeat of a connection, then ticks.
		const announced = new Set<string>();
		const sent = new Map<string, { json: string; at: number }>();
		const gpusOf = () => ({ ...snap.gpu, gpus: heartbeatGpus(snap.gpu.gpus, sent, Date.now()) });
		const first = JSON.stringify({ type: "heartbeat", seq: 1, snapshot: { ...snap, gpu: gpusOf(), workers: heartbeatWorkers(hive.unreported(), announced) } });
		const msg = JSON.stringify({ type: "heartbeat", seq: 2, snapshot: { ...snap, gpu: gpusOf(), workers: heartbeatWorkers(hive.unreported(), announced) } });
		const bytes = Buffer.byteLength(msg);
		const deflated = deflateRawSync(msg).length;
		ctx.results.heartbeat = {
			workers: n,
			gpus: snap.gpu.gpus.length,
			bytes,
			bytesPerWorker: Math.round(bytes / n),
			deflateBytes: deflated,
			firstOnConnectionBytes: Buffer.byteLength(first),
		};
		log(
			`   ${n} workers + ${snap.gpu.gpus.length} GPUs: ${bytes} bytes JSON per heartbeat (${Math.round(bytes / n)} per worker; ${deflated} deflated); the first on a connection, all in full: ${Buffer.byteLength(first)} bytes`,
		);
	} finally {
		gpus.stop();
		for (const w of hive.list()) if (w.state === "running") await hive.kill(w.id).catch(() => {});
		await hive.stop();
		await hive.driver.destroyRoot();
		removeDir(stateDir);
	}
}
