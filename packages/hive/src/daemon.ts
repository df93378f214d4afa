import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CgroupDriverName, HostFacts } from "@apiary/protocol";
import type { FastifyInstance } from "fastify";
import { buildHiveApp } from "./api/app.ts";
import { createDriver, detect } from "./cgroup/detect.ts";
import { GpuSampler } from "./gpu/sampler.ts";
import { GpuHealth } from "./gpu/gpu-health.ts";
import { readOptional } from "./statfile.ts";
import { Hive } from "./hive.ts";
import { chooseUser, defaultWorkerUser, type RunAsPolicy, readAccounts } from "./run-as.ts";
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
	/**
	 * The token every route of the hive's API but /healthz needs, on loopback
	 * too (workers and local users reach it). undefined: the one in
	 * `<state-dir>/api.token`, made (0600) at the first start; null: none
	 * (a library user's own choice; the CLI never passes it).
	 */
	token?: string | null;
	/** Whom workers run as when the hive is root (default: apiary-worker, else nobody). */
	workerUser?: string;
	/** Users a spawn may ask for. */
	allowUsers?: string[];
	/** root may be asked for (or be the worker user). */
	allowRootWorkers?: boolean;
	/** Queen to report to (http:// or ws://); none = a standalone hive. */
	/** The queen, or several to fail over between (the next is tried when one is unreachable). */
	queen?: string | string[];
	/** The hive's labels (`--label k=v`), sent to the queen in hello. */
	labels?: Record<string, string>;
	/** false: refuse the queen's spawn commands (`--no-remote-spawn`). */
	remoteSpawn?: boolean;
	/** The kernel log for Xid events (`--kmsg`, default /dev/kmsg); null: not read. */
	kmsg?: string | null;
	/** The queen cordons this hive while one of its GPUs is unhealthy (`--cordon-on-unhealthy-gpu`). */
	cordonOnUnhealthyGpu?: boolean;
	/** Token for the queen's socket; defaults to `token`. */
	queenToken?: string | null;
	/** https/wss queens: the CA their certificates are checked against. */
	queenCa?: Buffer;
	/**
	 * PEM files: the API serves HTTPS with them, and the hive shows them to its
	 * queen as its client certificate (a queen with --tls-client-ca takes a
	 * certificate whose CN is the hive's id as its credential). Read at start
	 * and again by reloadTls() (SIGHUP).
	 */
	tls?: { certFile: string; keyFile: string };
	/** Listen off loopback without TLS all the same (the token crosses the network in clear). */
	insecurePlaintext?: boolean;
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
	/** Whom workers run as by default; null: as the hive itself. */
	workerUser: string | null;
	/** Reads the certificate and key again: new connections (and the next queen connection) get them (SIGHUP). */
	reloadTls(): void;
	close(): Promise<void>;
}

/** Detect the driver, re-adopt workers, start the GPU reader, the tick loop and the API. */
export async function startHiveDaemon(o: HiveDaemonOptions): Promise<HiveDaemon> {
	const { host, port } = parseListen(o.listen);
	// No token at all is a library user's choice (token: null), for loopback only; the CLI always has one.
	if (!isLoopback(host) && o.token === null) throw new Error(`refusing to listen on ${host} without a token: pass --token-file FILE or set APIARY_TOKEN`);
	if (!isLoopback(host) && !o.tls && !o.insecurePlaintext) {
		throw new Error(
			`refusing to listen on ${host} without TLS: the API's token would cross the network in clear; pass --tls-cert FILE --tls-key FILE, or --insecure-plaintext to accept that`,
		);
	}
	const readTls = () => (o.tls ? { cert: readFileSync(o.tls.certFile), key: readFileSync(o.tls.keyFile) } : undefined);
	let tls = readTls();
	// The queen's credential is the configured token (or its own --queen-token-file), never the local API token made below.
	const queenToken = o.queenToken === undefined ? (o.token ?? null) : o.queenToken;
	const apiToken = o.token === undefined ? localApiToken(o.stateDir) : o.token;
	const runAs = runAsPolicy(o);
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
	const cgroupOwner = (pid: number) =>
		hive &&
		workerOfPid(
			root.proc,
			pid,
			(id) => hive?.get(id) !== undefined,
			() => null,
		);
	const health: GpuHealth = new GpuHealth({
		stateDir: o.stateDir,
		bootId: readOptional(`${root.proc}/sys/kernel/random/boot_id`)?.trim() || null,
		kmsg: o.kmsg === undefined ? "/dev/kmsg" : o.kmsg,
		uuidOfBus: (bus): string | null => gpu.uuidOfBus(bus),
		onAppError: (err) => hive?.gpuError(err, cgroupOwner),
		log: o.log,
	});
	const gpu: GpuSampler = new GpuSampler({
		health,
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
		runAs: runAs ?? undefined,
	});
	let app: FastifyInstance;
	let facts: HostFacts;
	try {
		facts = await hostFacts();
		await hive.start();
		health.start();
		gpu.start();
		await hive.tick();
		hive.startLoop(o.intervalMs);
		app = await buildHiveApp({ hive, host: facts, token: apiToken, logger: o.logger, version: VERSION, https: tls });
		await app.listen({ host, port });
	} catch (err) {
		// e.g. the port is taken: stop what started so the process can exit.
		gpu.stop();
		health.stop();
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
				token: queenToken,
				credentialFile: join(h.stateDir, "queen.credential"),
				ca: o.queenCa,
				clientCert: () => tls,
				hive: h,
				host: facts,
				gpus: gpu,
				version: VERSION,
				labels: o.labels,
				remoteSpawn: o.remoteSpawn,
				cordonOnUnhealthyGpu: o.cordonOnUnhealthyGpu,
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
		workerUser: runAs?.workerUser ?? null,
		url: `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${boundPort}`,
		reloadTls() {
			const next = readTls();
			if (!next) return;
			(app.server as unknown as { setSecureContext(o: { cert: Buffer; key: Buffer }): void }).setSecureContext(next);
			tls = next;
			o.log?.("TLS certificate reloaded", { cert: o.tls!.certFile });
		},
		async close() {
			await link?.stop();
			await app.close();
			gpu.stop();
			health.stop();
			health.stop();
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

/**
 * The local API's token when none is configured: `<state-dir>/api.token`,
 * made at the first start (0600, the hive's user's), as Jupyter does for its
 * local server; the local `hive …` commands read it from there.
 */
function localApiToken(stateDir: string): string {
	const file = join(stateDir, "api.token");
	try {
		const t = readFileSync(file, "utf8").trim();
		if (t) return t;
	} catch {
		// None yet: made below.
	}
	mkdirSync(stateDir, { recursive: true, mode: 0o700 });
	const t = randomBytes(32).toString("base64url");
	writeFileSync(`${file}.tmp`, `${t}\n`, { mode: 0o600 });
	renameSync(`${file}.tmp`, file);
	return t;
}

/** Whom workers run as: a root hive's are not root; a hive that is not root runs them as itself (and says so). */
function runAsPolicy(o: HiveDaemonOptions): (RunAsPolicy & { setpriv: string }) | null {
	const uid = process.getuid?.() ?? 0;
	if (uid !== 0) return { hiveUid: uid, workerUser: null, allowUsers: [], allowRoot: false, setpriv: "" };
	const acc = readAccounts(hostRoot(o.hostRoot).etc);
	const workerUser = o.workerUser ?? defaultWorkerUser(acc.passwd);
	const policy = { hiveUid: 0, workerUser, allowUsers: o.allowUsers ?? [], allowRoot: o.allowRootWorkers === true };
	// Checked at start: a configured user that does not exist, or root without the flag, is an error now, not at each spawn.
	const u = chooseUser(undefined, policy, acc.passwd, acc.group);
	const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));
	if (u && u.uid !== 0 && !setpriv) throw new Error("running workers as another user needs setpriv (Debian's util-linux); it was not found");
	return { ...policy, setpriv: setpriv ?? "" };
}
