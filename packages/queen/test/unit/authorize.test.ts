import { allows, ROLES } from "@apiary/protocol";
import { describe, expect, it } from "vitest";
import { authorize, certificatePrincipal, mayBeHive, type Principal } from "../../src/auth/authorize.ts";

const p = (role: Principal["role"], hive: string | null = null): Principal => ({ tokenId: "t-000000000001", name: "n", role, hive });

describe("who may do what (policy alone)", () => {
	it("read ⊂ schedule ⊂ admin; hive is apart and reaches only the socket", () => {
		expect(ROLES.filter((r) => allows(r, "read"))).toEqual(["read", "schedule", "admin"]);
		expect(ROLES.filter((r) => allows(r, "schedule"))).toEqual(["schedule", "admin"]);
		expect(ROLES.filter((r) => allows(r, "admin"))).toEqual(["admin"]);
		expect(ROLES.filter((r) => allows(r, "hive"))).toEqual(["hive"]);
		expect(ROLES.every((r) => allows(r, "open"))).toBe(true);
	});

	it("401 without a credential, 403 naming the role needed, and nothing refused on an open queen", () => {
		expect(authorize(null, "read", true)).toMatchObject({ ok: false, status: 401, message: expect.stringMatching(/--token-file FILE or APIARY_TOKEN/) });
		expect(authorize(p("read"), "schedule", true)).toMatchObject({ ok: false, status: 403, message: expect.stringMatching(/needs role schedule/) });
		expect(authorize(p("hive", "h1"), "read", true)).toMatchObject({ ok: false, status: 403, message: expect.stringMatching(/socket alone/) });
		expect(authorize(p("schedule"), "read", true)).toEqual({ ok: true });
		expect(authorize(null, "admin", false)).toEqual({ ok: true });
		expect(authorize(null, "open", true)).toEqual({ ok: true });
	});

	it("a hive credential speaks for its own id only; an enrolment one for any new id; read never", () => {
		expect(mayBeHive(p("hive", "h1"), "h1", true)).toEqual({ ok: true });
		expect(mayBeHive(p("hive", "h1"), "h2", true)).toEqual({ ok: false, why: "this credential speaks for hive h1, not h2" });
		expect(mayBeHive(p("hive"), "anything", true)).toEqual({ ok: true });
		expect(mayBeHive(p("read"), "h1", true)).toMatchObject({ ok: false });
		expect(mayBeHive(null, "h1", true)).toMatchObject({ ok: false });
		expect(mayBeHive(null, "h1", false)).toEqual({ ok: true });
	});

	it("a client certificate is a hive credential only when verified and its CN is a hive id", () => {
		const cert = (CN: string | string[]) => ({ subject: { CN }, serialNumber: "0A" });
		const rack = certificatePrincipal(true, cert("rack7-a"));
		expect(rack).toMatchObject({ tokenId: null, role: "hive", hive: "rack7-a" });
		expect(mayBeHive(rack, "rack7-a", true)).toEqual({ ok: true });
		expect(mayBeHive(rack, "rack7-b", true)).toEqual({ ok: false, why: "this credential speaks for hive rack7-a, not rack7-b" });
		expect(certificatePrincipal(false, cert("rack7-a"))).toBeNull(); // another CA's, or none
		expect(certificatePrincipal(true, cert("Rack 7"))).toBeNull(); // not an id
		expect(certificatePrincipal(true, cert(["a", "b"]))).toBeNull(); // two CNs: which?
		expect(certificatePrincipal(true, null)).toBeNull();
		expect(certificatePrincipal(true, {})).toBeNull();
	});
});
