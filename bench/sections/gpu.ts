import { execFile } from "node:child_process";
import { GpuSampler } from "../../packages/hive/src/gpu/sampler.ts";
import { FAKE_SMI } from "@apiary/test-support/procs";
import { ctx, sleep, r3, log, cpuSecondsOf, childrenCpuSeconds, sized } from "../lib.ts";

// 6. GPU sampling: one long-lived --loop-ms reader vs one exec per tick.
export async function gpuSampling() {
	const seconds = sized(1, 3, 5);
	const interval = 100;
	// Loop mode: the child's CPU over the window, per block of readings.
	const sampler = new GpuSampler({ binary: FAKE_SMI("a100x8"), intervalMs: interval });
	sampler.start();
	for (let i = 0; i < 50 && sampler.status().gpus.length < 8; i++) await sleep(100);
	const pid = (sampler as unknown as { child: { pid: number } }).child.pid;
	const c0 = cpuSecondsOf(pid);
	const self0 = process.cpuUsage();
	await sleep(seconds * 1000);
	const loopCpu = cpuSecondsOf(pid) - c0 + (process.cpuUsage(self0).user + process.cpuUsage(self0).system) / 1e6 / 2;
	sampler.stop();
	const loopSamples = (seconds * 1000) / interval;
	// Exec per tick: the same query, one process each time.
	const n = sized(3, 10, 20);
	const e0 = childrenCpuSeconds();
	const w0 = performance.now();
	for (let i = 0; i < n; i++) {
		await new Promise<void>((resolve, reject) =>
			execFile(FAKE_SMI("a100x8"), ["--query-gpu=index,uuid,name,memory.used,utilization.gpu,power.draw", "--format=csv,noheader,nounits"], (err) =>
				err ? reject(err) : resolve(),
			),
		);
	}
	const execWallMs = (performance.now() - w0) / n;
	const execCpu = (childrenCpuSeconds() - e0) / n;
	const loopPer = loopCpu / loopSamples;
	ctx.results.gpu = {
		loopCpuMsPerSample: r3(loopPer * 1000),
		execCpuMsPerSample: r3(execCpu * 1000),
		execWallMsPerSample: r3(execWallMs),
		execOverLoop: r3(execCpu / loopPer),
	};
	log(
		`   loop mode ${r3(loopPer * 1000)} ms CPU per sample (upper bound: half this process's CPU counted); exec per tick ${r3(execCpu * 1000)} ms CPU, ${r3(execWallMs)} ms wall → ${r3(execCpu / loopPer)}× cheaper in loop mode`,
	);
}
