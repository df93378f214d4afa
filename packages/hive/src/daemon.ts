import { accessSync, constants } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CgroupDriverName, HostFacts } from "@apiary/protocol";
import type { FastifyInstance } from "fastify";
import { buildHiveApp } from "./api/app.ts";
import { createDriver, detect } from "./cgroup/detect.ts";
import { GpuSampler } from "./gpu/sampler.ts";
import { Hive } from "./hive.ts";
import { hostFacts } from "./host.ts";
import type { Clock } from "@apiary/kit/clock";
import { isLoopback, parseListen } from "@apiary/kit/listen";
import { readVersion } from "@apiary/kit/version";
import { workerOfPid } from "./gpu-attribution.ts";
import { hostRoot } from "./host-root.ts";
import { acquireLock } from "./lock.ts";
import { QueenLink } from "./queen-link.ts";

export const VERSION = readVersion(new URL("../package.json", import.meta.url));

export interface HiveDaemonOptions {
	listen: string;
	name: string;
	intervalMs: number;
	cgroupDriver: "auto" | CgroupDriverName;
	cgroupRoot?: string;
	stateDir: string;
	nvidiaSmi: string;
	gpuIntervalMs?: number;
	/** Default time between a stop's signal and SIGKILL. */
	graceMs?: number;
	stopSignal?: NodeJS.Signals;
	logMaxBytes?: number;
	logDirBudgetBytes?: number;
	token: string | null;
	/** Queen to report to (http:// or ws://); none = a standalone hive. */
	/** The queen, or several to fail over between (the next is tried when one is unreachable). */
	queen?: string | string[];
	/** The hive's labels (`--label k=v`), sent to the queen in hello. */
	labels?: Record<string, string>;
	/** false: refuse the queen's spawn commands (`--no-remote-spawn`). */
	remoteSpawn?: boolean;
	/** Token for the queen's socket; defaults to `token`. */
	queenToken?: string | null;
	logger?: boolean;
	clock?: Clock;
	/** The host's root, under which /proc and /sys are read (default /). */
	hostRoot?: string;
	log?: (msg: string, extra?: object) => void;
}

export interface HiveDaemon {
	hive: Hive;
	gpu: GpuSampler;
	app: FastifyInstance;
	host: HostFacts;
	url: string;
	link: QueenLink | null;
	close(): Promise<void>;
}

/** Detect the driver, re-adopt workers, start the GPU reader, the tick loop and the API. */
export async function startHiveDaemon(o: HiveDaemonOptions): Promise<HiveDaemon> {
	const { host, port } = parseListen(o.listen);
	if (!isLoopback(host) && !o.token) {
		throw new Error(`refusing to listen on ${host} without a token: pass --token-file FILE or set APIARY_TOKEN (loopback needs none)`);
	}
	const root = hostRoot(o.hostRoot);
	const detection = detect({ requested: o.cgroupDriver, cgroupRoot: o.cgroupRoot, host: root, hiveId: o.name });
	const driver = createDriver(detection, root);
	// One hive per state dir and per cgroup root: a second one would re-adopt,
	// and on exit remove, the first one's workers.
	const locks = [acquireLock(join(o.stateDir, "hive.lock"), `state dir ${o.stateDir}`, root.proc)];
	const release = () => {
		for (const unlock of locks.splice(0)) unlock();
	};
	try {
		if (driver.info.root)
			locks.push(acquireLock(join(lockDir(), `cgroup${driver.info.root.replace(/[^A-Za-z0-9._-]/g, "_")}.lock`), `cgroup root ${driver.info.root}`, root.proc));
	} catch (err) {
		release();
		throw err;
	}
	let hive: Hive | null = null;
	const gpu = new GpuSampler({
		binary: o.nvidiaSmi,
		intervalMs: o.gpuIntervalMs ?? Math.max(1000, o.intervalMs),
		attribute: (pid) =>
			hive &&
			workerOfPid(
				root.proc,
				pid,
				(id) => hive?.get(id) !== undefined,
				(p) => hive?.list().find((w) => w.state === "running" && w.pid === p)?.id ?? null,
			),
		log: o.log,
	});
	hive = new Hive({
		driver,
		stateDir: o.stateDir,
		hiveId: o.name,
		clock: o.clock,
		gpus: gpu,
		host: root,
		log: o.log,
		graceMs: o.graceMs,
		stopSignal: o.stopSignal,
		logMaxBytes: o.logMaxBytes,
		logDirBudgetBytes: o.logDirBudgetBytes,
	});
	let app: FastifyInstance;
	let facts: HostFacts;
	try {
		facts = await hostFacts();
		await hive.start();
		gpu.start();
		await hive.tick();
		hive.startLoop(o.intervalMs);
		app = await buildHiveApp({ hive, host: facts, token: o.token, logger: o.logger, version: VERSION });
		await app.listen({ host, port });
	} catch (err) {
		// e.g. the port is taken: stop what started so the process can exit.
		gpu.stop();
		await hive.stop();
		release();
		throw err;
	}
	const addr = app.server.address();
	const boundPort = typeof addr === "object" && addr ? addr.port : port;
	const h = hive;
	const link = o.queen
		? new QueenLink({
				queen: o.queen,
				token: o.queenToken === undefined ? o.token : o.queenToken,
				credentialFile: join(h.stateDir, "queen.credential"),
				hive: h,
				host: facts,
				gpus: gpu,
				version: VERSION,
				labels: o.labels,
				remoteSpawn: o.remoteSpawn,
				log: o.log,
			})
		: null;
	link?.start();
	return {
		hive: h,
		gpu,
		app,
		host: facts,
		link,
		url: `http://${host.includes(":") ? `[${host}]` : host}:${boundPort}`,
		async close() {
			await link?.stop();
			await app.close();
			gpu.stop();
			await h.stop();
			release();
		},
	};
}

/** Where cgroup-root locks live: /run/apiary as root (cleared at boot, like the locks' owners), else the temp dir. */
function lockDir(): string {
	try {
		accessSync("/run", constants.W_OK);
		return "/run/apiary";
	} catch {
		// Not root: cgroups are out of reach anyway; the temp dir serves.
		return join(tmpdir(), "apiary-locks");
	}
}
