import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startDaemon, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Install on a host like any other daemon (issue #22): `npm run package`
// builds a tarball and a .deb of one tree with its own Node runtime; the
// tarball runs where no node is on the PATH; the .deb installs, upgrades
// over itself keeping an edited env file, and purges, with real dpkg.

const ROOT = new URL("../../", import.meta.url).pathname;
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const isRoot = process.getuid?.() === 0;
const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" });

describe("npm run package", () => {
	const dir = tempDir("package");
	const dist = join(dir, "dist");
	const tarball = join(dist, `apiary-${VERSION}-linux-x64.tar.gz`);
	const deb = join(dist, `apiary_${VERSION}_amd64.deb`);
	// The upgrade's newer package: the same tree with a later version stamped on it (root only: only dpkg needs it).
	const NEXT = `${VERSION}+up1`;
	const nextDeb = join(dir, "next", `apiary_${NEXT}_amd64.deb`);
	beforeAll(() => {
		execFileSync("bash", [join(ROOT, "scripts/package.sh"), "--out", dist], { stdio: "pipe", timeout: 300_000 });
		if (isRoot) execFileSync("bash", [join(ROOT, "scripts/package.sh"), "--out", join(dir, "next"), "--version", NEXT], { stdio: "pipe", timeout: 300_000 });
	}, 620_000);
	// Each part's clean-up, run however its tests end (one hook: biome allows no second at a level).
	const cleanups: (() => void | Promise<void>)[] = [];
	afterAll(async () => {
		for (const c of cleanups.reverse()) await c();
		removeDir(dir);
	});

	it("builds the tarball (at most 60 MB) and the .deb, holding the same tree: no dev tools, no tests", () => {
		expect(statSync(tarball).size).toBeLessThanOrEqual(60 * 1e6);
		const inTar = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8", maxBuffer: 64 << 20 })
			.split("\n")
			.filter((l) => l && !l.endsWith("/"))
			.map((l) => l.slice(l.indexOf("/") + 1))
			.sort();
		const inDeb = execFileSync("dpkg-deb", ["--fsys-tarfile", deb], { maxBuffer: 256 << 20 });
		const debFiles = execFileSync("tar", ["-t"], { input: inDeb, encoding: "utf8", maxBuffer: 64 << 20 })
			.split("\n")
			.filter((l) => l.startsWith("./opt/apiary/") && !l.endsWith("/"))
			.map((l) => l.slice("./opt/apiary/".length))
			.sort();
		expect(debFiles).toEqual(inTar);
		for (const f of [
			"runtime/node",
			"bin/hive",
			"bin/queen",
			"packages/queen/src/dashboard/index.html",
			"deploy/systemd/apiary-hive.service",
			"docs/operations.md",
		])
			expect(inTar, f).toContain(f);
		// Production dependencies only: none of the development tools, nor the test helpers, nor any test.
		const devTools = ["vitest", "typescript", "@biomejs/biome", "playwright-core", "tinybench", "node", "@types/node"].map((m) => `node_modules/${m}/`);
		for (const dev of [...devTools, "packages/test-support", "/test/"])
			expect(
				inTar.filter((f) => f.includes(dev)),
				dev,
			).toEqual([]);
		expect(inTar.some((f) => f.startsWith("node_modules/fastify/"))).toBe(true);
	});

	it.skipIf(!existsSync("/usr/bin/lintian"))("lintian reports no error or warning past the overrides the package states", () => {
		const r = sh("lintian", ["--fail-on", "error,warning", deb]);
		expect(r.status, r.stdout + r.stderr).toBe(0);
	});

	describe("the tarball, unpacked, on a PATH that holds no node", () => {
		const unpacked = join(dir, "unpacked");
		const root = newCgroupRoot();
		const daemons: Daemon[] = [];
		// Only what the scripts and the hive call: sh and a few coreutils, never node.
		const path = join(dir, "path");
		beforeAll(() => {
			mkdirSync(unpacked);
			execFileSync("tar", ["-C", unpacked, "-xzf", tarball]);
			mkdirSync(path);
			for (const t of ["sh", "dirname", "readlink", "setpriv", "true"]) {
				const at = ["/bin", "/usr/bin"].map((d) => join(d, t)).find((p) => existsSync(p));
				if (at) symlinkSync(at, join(path, t));
			}
		});
		cleanups.push(async () => {
			for (const d of daemons.reverse()) await d.stop();
			await removeCgroupRoot(root);
		});

		it("bin/queen and bin/hive start with the runtime they carry, reach /healthz, and the hive joins", async () => {
			const env = { PATH: path, HOME: dir };
			expect(sh("sh", ["-c", `PATH=${path}; command -v node || echo none`]).stdout.trim()).toBe("none");
			const tree = join(unpacked, `apiary-${VERSION}-linux-x64`);
			const queen = await startDaemon(join(tree, "bin/queen"), ["start", "--listen", "127.0.0.1:0", "--db", join(dir, "q.db")], env);
			daemons.push(queen);
			expect((await json(`${queen.url}/healthz`)).body).toMatchObject({ ok: true });
			const hive = await startDaemon(
				join(tree, "bin/hive"),
				[
					"start",
					"--listen",
					"127.0.0.1:0",
					"--queen",
					queen.url,
					"--name",
					"pkg-h",
					"--state-dir",
					join(dir, "hive"),
					"--cgroup-root",
					root,
					"--nvidia-smi",
					"/nonexistent",
				],
				env,
			);
			daemons.push(hive);
			await until(async () => (await json(`${queen.url}/v1/hives/pkg-h`)).body?.state === "ready", 20_000, "the hive joined");
			expect(sh(join(tree, "bin/hive"), ["--version"]).stdout.trim()).toBe(VERSION);
		});
	});

	describe.skipIf(!isRoot)("the .deb, installed with dpkg (as root)", () => {
		const had = (user: string) => sh("getent", ["passwd", user]).status === 0;
		const before = { apiary: had("apiary"), worker: had("apiary-worker"), varLib: existsSync("/var/lib/apiary") };
		let installed = false;
		cleanups.push(() => {
			// Whatever happened above: the package this test installed and what it made go, and the users only if it made them.
			if (installed) sh("dpkg", ["--purge", "apiary"]);
			if (!before.apiary && had("apiary")) sh("userdel", ["apiary"]);
			if (!before.worker && had("apiary-worker")) sh("userdel", ["apiary-worker"]);
			if (!before.varLib) sh("rm", ["-rf", "/var/lib/apiary"]);
		});

		it("installs under /opt/apiary with the commands on the PATH, the units (not enabled), the env files, the users and the state dir", () => {
			expect(sh("dpkg", ["-s", "apiary"]).status, "no apiary package installed before the test").not.toBe(0);
			installed = true;
			const r = sh("dpkg", ["-i", deb]);
			expect(r.status, r.stdout + r.stderr).toBe(0);
			expect(sh("/usr/bin/hive", ["--version"]).stdout.trim()).toBe(VERSION);
			expect(sh("/usr/bin/queen", ["--version"]).stdout.trim()).toBe(VERSION);
			for (const f of ["/lib/systemd/system/apiary-hive.service", "/lib/systemd/system/apiary-queen.service", "/etc/apiary/hive.env", "/etc/apiary/queen.env"])
				expect(existsSync(f), f).toBe(true);
			expect(existsSync("/etc/systemd/system/multi-user.target.wants/apiary-hive.service")).toBe(false);
			expect(had("apiary") && had("apiary-worker")).toBe(true);
			const queenDir = statSync("/var/lib/apiary/queen");
			expect(queenDir.uid).toBe(Number(sh("id", ["-u", "apiary"]).stdout));
			if (existsSync("/usr/bin/systemd-analyze")) {
				const v = sh("systemd-analyze", ["verify", "/lib/systemd/system/apiary-hive.service", "/lib/systemd/system/apiary-queen.service"]);
				expect(v.status, v.stderr).toBe(0);
				expect(v.stderr.split("\n").filter((l) => l.trim() && !l.includes("'DelegateSubgroup'"))).toEqual([]);
			}
		});

		it("an upgrade to a later version, and a reinstall over itself, keep an edited /etc/apiary/hive.env", () => {
			const edited = `${readFileSync("/etc/apiary/hive.env", "utf8")}HIVE_ARGS="--queen https://q.test:7070"\n`;
			writeFileSync("/etc/apiary/hive.env", edited);
			const up = sh("dpkg", ["-i", nextDeb]);
			expect(up.status, up.stdout + up.stderr).toBe(0);
			expect(sh("dpkg-query", ["-W", "-f", "${Version}", "apiary"]).stdout).toBe(NEXT);
			expect(sh("/usr/bin/hive", ["--version"]).stdout.trim()).toBe(NEXT);
			expect(readFileSync("/etc/apiary/hive.env", "utf8")).toBe(edited);
			const again = sh("dpkg", ["-i", nextDeb]);
			expect(again.status, again.stdout + again.stderr).toBe(0);
			expect(readFileSync("/etc/apiary/hive.env", "utf8")).toBe(edited);
		});

		it("a purge leaves nothing it made but the state and users the docs say are kept", () => {
			const r = sh("dpkg", ["--purge", "apiary"]);
			expect(r.status, r.stdout + r.stderr).toBe(0);
			for (const f of [
				"/opt/apiary",
				"/usr/bin/hive",
				"/usr/bin/queen",
				"/lib/systemd/system/apiary-hive.service",
				"/lib/systemd/system/apiary-queen.service",
				"/etc/apiary",
				"/usr/share/doc/apiary",
				"/usr/share/lintian/overrides/apiary",
			])
				expect(existsSync(f), f).toBe(false);
			expect(sh("dpkg", ["-s", "apiary"]).status).not.toBe(0);
			// Kept, as docs/operations.md says: the state (databases, records) and the system users.
			expect(existsSync("/var/lib/apiary")).toBe(true);
		});
	});
});
