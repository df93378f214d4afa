import { describe, expect, it } from "vitest";
import { dbTargets, fits } from "../../src/store/pg/hosts.ts";

// libpq's multi-host --db form, split into one URL per host (node-postgres reads one host only).
describe("--db in libpq's multi-host form", () => {
	it("one URL per host, in order, each with the path, user and other parameters, without target_session_attrs", () => {
		const t = dbTargets("postgres://apiary:s3cret@db1:5433,db2,[::1]:6000/apiary?target_session_attrs=read-write&sslmode=require&connect_timeout=2");
		expect(t.urls).toEqual([
			"postgres://apiary:s3cret@db1:5433/apiary?sslmode=require&connect_timeout=2",
			"postgres://apiary:s3cret@db2/apiary?sslmode=require&connect_timeout=2",
			"postgres://apiary:s3cret@[::1]:6000/apiary?sslmode=require&connect_timeout=2",
		]);
		expect(t.hosts).toEqual(["db1:5433", "db2", "[::1]:6000"]);
		expect(t.attrs).toBe("read-write");
		expect(t.connectTimeoutMs).toBe(2000);
	});
	it("a single host is itself; attributes default to any, the timeout to 5 s", () => {
		expect(dbTargets("postgresql://u@h:5432/d")).toEqual({ urls: ["postgresql://u@h:5432/d"], hosts: ["h:5432"], attrs: "any", connectTimeoutMs: 5000 });
		expect(dbTargets("postgres:///d").urls).toEqual(["postgres:///d"]);
	});
	it("refuses what a queen cannot use, naming it", () => {
		expect(() => dbTargets("postgres://u@a,b/d?target_session_attrs=standby")).toThrow(/target_session_attrs=standby: a queen writes/);
		expect(() => dbTargets("postgres://u@a/d?target_session_attrs=rw")).toThrow(/target_session_attrs=rw is not one of libpq's/);
		expect(() => dbTargets("postgres://u@a:x,b/d")).toThrow(/"a:x" is not HOST or HOST:PORT/);
		expect(() => dbTargets("postgres://u@a,,b/d")).toThrow(/"" is not HOST/);
		expect(() => dbTargets("postgres://u@a/d?connect_timeout=soon")).toThrow(/connect_timeout=soon/);
		expect(() => dbTargets("mysql://u@a/d")).toThrow(/not a postgres/);
	});
	it("which servers fit: libpq's definitions", () => {
		const primary = { inRecovery: false, readOnly: false };
		const standby = { inRecovery: true, readOnly: true };
		const readOnlyPrimary = { inRecovery: false, readOnly: true };
		expect([primary, standby, readOnlyPrimary].map((s) => fits("read-write", s))).toEqual([true, false, false]);
		expect([primary, standby, readOnlyPrimary].map((s) => fits("primary", s))).toEqual([true, false, true]);
		expect([primary, standby, readOnlyPrimary].map((s) => fits("any", s))).toEqual([true, true, true]);
	});
});
