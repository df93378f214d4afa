import { hostname } from "node:os";
import type { HostFacts } from "@apiary/protocol";
import si from "systeminformation";

/** Host facts, read once at start. */
export async function hostFacts(): Promise<HostFacts> {
	const [cpu, mem, os] = await Promise.all([si.cpu(), si.mem(), si.osInfo()]);
	return {
		hostname: hostname(),
		os: `${os.distro} ${os.release}`.trim(),
		kernel: os.kernel,
		arch: os.arch,
		cpuModel: `${cpu.manufacturer} ${cpu.brand}`.trim(),
		cores: cpu.cores,
		memoryBytes: mem.total,
	};
}
