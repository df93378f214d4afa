import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:tls";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { makeCerts } from "@apiary/test-support/certs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// TLS on the queen (issue #27): HTTPS and WSS on one port, clients that
// verify it against a CA, a plaintext request refused at once, a renewal by
// SIGHUP, and no listening off loopback in clear unless asked to.

/** The serial number of the certificate a new TLS connection to `port` is shown. */
const servedSerial = (port: number, ca: string) =>
	new Promise<string>((resolve, reject) => {
		const s = connect({ host: "127.0.0.1", port, ca: readFileSync(ca), servername: "localhost" }, () => {
			resolve(s.getPeerCertificate().serialNumber);
			s.end();
		});
		s.on("error", reject);
	});

describe("the queen over TLS", () => {
	const dir = tempDir("fault-tls");
	const root = newCgroupRoot();
	let certs: ReturnType<typeof makeCerts>;
	let queen: Daemon;
	let hive: Daemon | null = null;
	beforeAll(async () => {
		certs = makeCerts(dir, "queen");
		makeCerts(dir, "other", "other-ca");
		queen = await startQueen({ db: join(dir, "q.db"), extra: ["--tls-cert", certs.cert, "--tls-key", certs.key] });
	});
	afterAll(async () => {
		await hive?.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("serves HTTPS and WSS on one port: a hive and the CLI that trust its CA get in, one that does not is told which certificate failed", async () => {
		expect(queen.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
		expect(queen.out()).toMatch(/hives connect to wss:\/\//);
		hive = await startHive({ queen: queen.url, name: "tls-h", stateDir: join(dir, "hive"), cgroupRoot: root, extra: ["--ca", certs.ca] });
		const ok = await runCli("queen", ["hives", "--queen", queen.url], { APIARY_CA: certs.ca });
		await until(
			async () => /tls-h\s+ready/.test((await runCli("queen", ["hives", "--queen", queen.url], { APIARY_CA: certs.ca })).stdout),
			15_000,
			"the hive ready over WSS",
		);
		expect(ok.code, ok.stderr).toBe(0);
		const wrong = await runCli("queen", ["hives", "--queen", queen.url], { APIARY_CA: join(dir, "other-ca.crt") });
		expect(wrong.code).toBe(1);
		expect(wrong.stderr).toMatch(/certificate/i);
		const none = await runCli("queen", ["hives", "--queen", queen.url], { APIARY_CA: "" });
		expect(none.stderr).toMatch(/self.signed|unable to (get|verify)|certificate/i);
	});

	it("a plaintext request to the TLS port is refused at once, not left hanging", async () => {
		const port = Number(new URL(queen.url).port);
		const outcome = await new Promise<string>((resolve) => {
			const req = request({ host: "127.0.0.1", port, path: "/healthz", timeout: 10_000 }, (res) => resolve(`answered ${res.statusCode}`));
			req.on("timeout", () => {
				req.destroy();
				resolve("hung");
			});
			req.on("error", (e) => resolve(`refused: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
			req.end();
		});
		expect(outcome).toMatch(/^refused: |^answered 400/);
	});

	it("SIGHUP reloads the certificate: a new client is shown the new one, an open socket goes on", async () => {
		const port = Number(new URL(queen.url).port);
		const before = await servedSerial(port, certs.ca);
		// A renewal: a new certificate from the same CA, written over the old files.
		const next = makeCerts(dir, "queen-next");
		writeFileSync(certs.cert, readFileSync(next.cert));
		writeFileSync(certs.key, readFileSync(next.key));
		queen.proc.kill("SIGHUP");
		const after = await until(
			async () => {
				const s = await servedSerial(port, certs.ca);
				return s !== before ? s : null;
			},
			10_000,
			"the new certificate served",
		);
		expect(after).not.toBe(before);
		// The hive's WSS connection, opened before, went on.
		expect((await runCli("queen", ["hives", "--queen", queen.url], { APIARY_CA: certs.ca })).stdout).toMatch(/tls-h\s+ready/);
		expect(queen.err()).toMatch(/TLS certificate reloaded/);
	});

	it("refuses to listen off loopback without TLS unless --insecure-plaintext, and then says so, in its start line and /healthz", async () => {
		writeFileSync(join(dir, "admin.token"), "tls-admin-token-0123456789\n");
		const refused = await runCli(
			"queen",
			["start", "--listen", "0.0.0.0:0", "--db", join(dir, "plain.db"), "--token-file", join(dir, "admin.token")],
			{},
			20_000,
		);
		expect(refused.code).toBe(1);
		expect(refused.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without TLS.*--tls-cert FILE --tls-key FILE, or --insecure-plaintext/);
		const plain = await startQueen({
			db: join(dir, "plain.db"),
			tokenFile: join(dir, "admin.token"),
			extra: ["--listen", "0.0.0.0:0", "--insecure-plaintext"],
		});
		try {
			expect(plain.out()).toMatch(/WARNING: --insecure-plaintext/);
			const port = new URL(plain.url).port;
			expect((await json(`http://127.0.0.1:${port}/healthz`)).body).toMatchObject({ ok: true, insecurePlaintext: true });
		} finally {
			await plain.stop();
		}
	});
});
