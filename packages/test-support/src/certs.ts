import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * A CA (made once per `ca` name in `dir`) and a certificate for 127.0.0.1 and
 * localhost signed by it: ECDSA P-256, with Debian's openssl, for the TLS
 * tests and bench; `days` 0 makes one that expires the moment it is made.
 * Returns the PEM files' paths.
 */
export function makeCerts(dir: string, name: string, ca = "ca", days = 1): { cert: string; key: string; ca: string } {
	const o = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
	const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
	if (!existsSync(join(dir, `${ca}.crt`))) o(["req", "-x509", ...ec, "-keyout", `${ca}.key`, "-out", `${ca}.crt`, "-subj", `/CN=${ca}`, "-days", "2"]);
	o(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
	writeFileSync(join(dir, `${name}.ext`), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
	o([
		"x509",
		"-req",
		"-in",
		`${name}.csr`,
		"-CA",
		`${ca}.crt`,
		"-CAkey",
		`${ca}.key`,
		"-CAcreateserial",
		"-out",
		`${name}.crt`,
		"-days",
		String(days),
		"-extfile",
		`${name}.ext`,
	]);
	return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: join(dir, `${ca}.crt`) };
}
