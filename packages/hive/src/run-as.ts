import { readFileSync } from "node:fs";
import { HttpError } from "@apiary/kit/errors";

// Who a worker runs as. A hive running as root runs workers as an ordinary
// user (--worker-user, default apiary-worker, else nobody), as Nomad's exec
// driver runs tasks as nobody and Slurm runs jobs as the submitter: a worker
// must not be able to read the hive's credentials, write its state, or
// become root through it. Users come from the host's /etc/passwd and
// /etc/group (under the host root), read at each spawn: no native getpwnam.

export interface WorkerUser {
	name: string;
	uid: number;
	gid: number;
	/** Supplementary groups (video/render reach GPUs through them). */
	groups: number[];
	home: string;
}

export interface RunAsPolicy {
	/** The hive's own uid: only root can run a worker as anyone else. */
	hiveUid: number;
	/** The default worker user (--worker-user); null: the hive's own user (not root). */
	workerUser: string | null;
	/** Users a spawn may ask for (--allow-user). */
	allowUsers: readonly string[];
	/** root may be asked for, or be the --worker-user (--allow-root-workers). */
	allowRoot: boolean;
}

/** One /etc/passwd line's fields, or null. */
function passwdEntry(text: string, name: string): { uid: number; gid: number; home: string } | null {
	for (const line of text.split("\n")) {
		const f = line.split(":");
		if (f[0] === name && f.length >= 7) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] || "/" };
	}
	return null;
}

/** Groups listing `name` as a member, from /etc/group text. */
function memberOf(text: string, name: string): number[] {
	const out: number[] = [];
	for (const line of text.split("\n")) {
		const f = line.split(":");
		if (f.length >= 4 && f[3]!.split(",").includes(name)) out.push(Number(f[2]));
	}
	return out;
}

/** A user by name, from passwd and group text; null when there is none. */
export function parseUser(passwd: string, group: string, name: string): WorkerUser | null {
	const e = passwdEntry(passwd, name);
	if (!e || !Number.isInteger(e.uid) || !Number.isInteger(e.gid)) return null;
	const groups = [...new Set([e.gid, ...memberOf(group, name)])];
	return { name, uid: e.uid, gid: e.gid, groups, home: e.home };
}

/** The default worker user of a root hive: apiary-worker when the host has it, else nobody. */
export function defaultWorkerUser(passwd: string): string {
	return passwdEntry(passwd, "apiary-worker") ? "apiary-worker" : "nobody";
}

/**
 * Whom a spawn runs as (null: as the hive itself, which is not root), or a
 * 400/403 naming why not. Pure: the caller reads the files.
 */
export function chooseUser(asked: string | undefined, p: RunAsPolicy, passwd: string, group: string): WorkerUser | null {
	if (p.hiveUid !== 0) {
		// Not root: it cannot be anyone else (the `none` driver's case); it says so rather than pretend.
		if (asked !== undefined)
			throw new HttpError(403, `user: this hive runs as uid ${p.hiveUid}, not root: its workers run as itself and cannot run as ${asked}`);
		return null;
	}
	const name = asked ?? p.workerUser;
	if (name === null) throw new HttpError(500, "no worker user configured");
	if (asked !== undefined && asked !== p.workerUser && !p.allowUsers.includes(asked) && !(asked === "root" && p.allowRoot))
		throw new HttpError(403, `user: ${asked} is not allowed on this hive (hive start --allow-user ${asked}; root needs --allow-root-workers)`);
	if (name === "root" && !p.allowRoot) throw new HttpError(403, "user: workers run as root only on a hive started with --allow-root-workers");
	const u = parseUser(passwd, group, name);
	if (!u) throw new HttpError(400, `user: no user ${JSON.stringify(name)} on this host`);
	if (u.uid === 0 && !p.allowRoot) throw new HttpError(403, `user: ${name} is uid 0; workers run as root only with --allow-root-workers`);
	return u;
}

/** Reads the host's user and group files (its /etc, under the host root). */
export function readAccounts(etc = "/etc"): { passwd: string; group: string } {
	const read = (f: string) => {
		try {
			return readFileSync(`${etc}/${f}`, "utf8");
		} catch {
			// No such file (a minimal root): no users but what is not looked up.
			return "";
		}
	};
	return { passwd: read("passwd"), group: read("group") };
}

/** Credential variables never given to a worker, whatever the hive's own environment holds. */
export const CREDENTIAL_VARS = ["APIARY_TOKEN", "APIARY_HIVE_TOKEN", "APIARY_QUEEN_TOKEN"] as const;
