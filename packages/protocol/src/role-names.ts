// Who may do what on the queen, as Nomad's ACL capabilities and Kubernetes'
// view/edit/admin roles decide it. Each route declares the role it needs
// beside its schema; a token has one role. No schema here: light to load.

export const ROLES = ["read", "schedule", "admin", "hive"] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a route needs: a role, or `open` (no token: /healthz, the
 * dashboard's shell). read ⊂ schedule ⊂ admin; `hive` is apart: the hive
 * socket alone, and nothing else.
 */
export type RouteRole = Role | "open";

const RANK: Record<Exclude<Role, "hive">, number> = { read: 1, schedule: 2, admin: 3 };

/** Whether a token of role `have` may use a route that needs `need`. */
export function allows(have: Role, need: RouteRole): boolean {
	if (need === "open") return true;
	if (have === "hive" || need === "hive") return have === need;
	return RANK[have] >= RANK[need];
}
