import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { checkId } from "@apiary/protocol/ids";
import { convertFlag, parseFlags, UsageError } from "@apiary/kit/cli";

// `queen certs init`: a fleet's CA, the queen's server certificate and a
// client certificate per hive, so TLS takes minutes to set up. Made with
// Debian's openssl (ECDSA P-256), not a JavaScript X.509 library: no
// dependency enters the daemons' tree for a one-time helper, and an operator
// can read and redo every step with the tool they already know.

export async function certs(argv: string[], out: (s: string) => void): Promise<number> {
	const [sub, ...rest] = argv;
	const { values: v } = parseFlags(`queen certs ${sub ?? ""}`.trim(), rest, {
		dir: { type: "string" },
		san: { type: "string", multiple: true },
		hive: { type: "string", multiple: true },
		days: { type: "string", default: "397" },
	});
	if (sub === undefined) throw new UsageError("queen certs: a subcommand is needed (init); see queen certs --help");
	if (sub !== "init") throw new UsageError(`queen certs: unknown subcommand ${JSON.stringify(sub)} (init)`);
	if (!v.dir) throw new UsageError("queen certs init: --dir is required");
	const days = convertFlag("queen certs init", "days", v.days, (x) => {
		if (!/^\d{1,5}$/.test(x) || Number(x) < 1) throw new Error("expected a number of days, 1 or more");
		return Number(x);
	})!;
	const sans = (v.san ?? []).map((n) => convertFlag("queen certs init", "san", n, sanOf)!);
	const hives = (v.hive ?? []).map((h) => convertFlag("queen certs init", "hive", h, (x) => checkId(x, "hive"))!);
	const made = initCerts({ dir: v.dir, sans, hives, days });
	for (const f of made) out(`${f}\n`);
	return 0;
}

/** "DNS:name" or "IP:addr" for a --san. */
function sanOf(x: string): string {
	if (/^\d{1,3}(\.\d{1,3}){3}$/.test(x) || (x.includes(":") && /^[0-9a-fA-F:]+$/.test(x))) return `IP:${x}`;
	if (/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(x)) return `DNS:${x}`;
	throw new Error(`${JSON.stringify(x)} is neither a DNS name nor an IP address`);
}

/** Makes what is missing (and what was asked for again); returns the files written. */
export function initCerts(o: { dir: string; sans: string[]; hives: string[]; days: number }): string[] {
	// Keys are never readable by others, not even between openssl writing them and the chmod below.
	const umask = process.umask(0o077);
	try {
		return makeCerts(o);
	} finally {
		process.umask(umask);
	}
}

function makeCerts(o: { dir: string; sans: string[]; hives: string[]; days: number }): string[] {
	const made: string[] = [];
	const openssl = (args: string[]) => {
		try {
			execFileSync("openssl", args, { cwd: o.dir, stdio: "pipe" });
		} catch (e) {
			const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
			if (err.code === "ENOENT") throw new Error("queen certs: openssl was not found (Debian: apt-get install openssl)");
			throw new Error(`queen certs: openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`);
		}
	};
	const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
	if (!existsSync(o.dir)) mkdirSync(o.dir, { recursive: true, mode: 0o700 });
	if (!existsSync(join(o.dir, "ca.crt")) || !existsSync(join(o.dir, "ca.key"))) {
		openssl([
			"req",
			"-x509",
			...ec,
			"-keyout",
			"ca.key",
			"-out",
			"ca.crt",
			"-subj",
			"/CN=Apiary fleet CA",
			"-days",
			"3650",
			"-addext",
			"basicConstraints=critical,CA:TRUE",
			"-addext",
			"keyUsage=critical,keyCertSign,cRLSign",
		]);
		chmodSync(join(o.dir, "ca.crt"), 0o644);
		made.push(join(o.dir, "ca.crt"), join(o.dir, "ca.key"));
	}
	const leaf = (base: string, cn: string, sans: string[]) => {
		const ext = `${base}.ext`;
		writeFileSync(
			join(o.dir, ext),
			`basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${sans.join(",")}\n`,
		);
		try {
			openssl(["req", ...ec, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${cn}`]);
			openssl([
				"x509",
				"-req",
				"-in",
				`${base}.csr`,
				"-CA",
				"ca.crt",
				"-CAkey",
				"ca.key",
				"-CAcreateserial",
				"-out",
				`${base}.crt`,
				"-days",
				String(o.days),
				"-extfile",
				ext,
			]);
			chmodSync(join(o.dir, `${base}.crt`), 0o644);
		} finally {
			rmSync(join(o.dir, ext), { force: true });
			rmSync(join(o.dir, `${base}.csr`), { force: true });
		}
		made.push(join(o.dir, `${base}.crt`), join(o.dir, `${base}.key`));
	};
	if (o.sans.length > 0 || !existsSync(join(o.dir, "queen.crt"))) {
		const sans = o.sans.length > 0 ? o.sans : [`DNS:${hostname()}`, "DNS:localhost", "IP:127.0.0.1"];
		leaf("queen", sans[0]!.slice(sans[0]!.indexOf(":") + 1), sans);
	}
	if (o.hives.length > 0) mkdirSync(join(o.dir, "hives"), { recursive: true, mode: 0o700 });
	// A hive's CN is its id (what the queen checks); its API is reached by that name, and on loopback.
	for (const h of o.hives) leaf(join("hives", h), h, [`DNS:${h}`, "DNS:localhost", "IP:127.0.0.1"]);
	return made;
}
