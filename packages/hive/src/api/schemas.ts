import { ID_PATTERN } from "@apiary/protocol";
import { PROFILE_NAMES } from "../profiles.ts";

export const idParam = {
	type: "object",
	required: ["id"],
	properties: { id: { type: "string", pattern: ID_PATTERN, maxLength: 63 } },
} as const;

const nullable = <T extends object>(s: T) => ({ anyOf: [s, { type: "null" }] });

export const spawnBody = {
	type: "object",
	additionalProperties: false,
	required: ["command"],
	properties: {
		id: { type: "string", pattern: ID_PATTERN, maxLength: 63, description: "worker id; generated when absent" },
		command: { type: "array", minItems: 1, maxItems: 4096, items: { type: "string", minLength: 1, maxLength: 65536 }, description: "argv, never a shell string" },
		profile: { type: "string", enum: PROFILE_NAMES },
		cpu: nullable({ type: "number", exclusiveMinimum: 0, maximum: 4096, description: "CPU cores" }),
		memoryBytes: nullable({ type: "integer", minimum: 4 * 1024 * 1024, description: "memory limit, bytes (≥ 4 MiB)" }),
		pids: nullable({ type: "integer", minimum: 1, maximum: 4194304 }),
		timeoutMs: nullable({ type: "integer", minimum: 1 }),
		labels: {
			type: "object",
			maxProperties: 64,
			propertyNames: { pattern: "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$" },
			additionalProperties: { type: "string", maxLength: 256 },
		},
		gpus: { type: "array", maxItems: 64, items: { type: "string", pattern: "^([0-9]{1,3}|GPU-[0-9a-fA-F-]{8,64}|MIG-[0-9a-fA-F-]{8,64})$" } },
		env: {
			type: "object",
			maxProperties: 256,
			propertyNames: { pattern: "^[A-Za-z_][A-Za-z0-9_]*$" },
			additionalProperties: { type: "string", maxLength: 65536 },
		},
		cwd: { type: "string", minLength: 1, maxLength: 4096, pattern: "^/" },
	},
} as const;

export const listQuery = {
	type: "object",
	additionalProperties: false,
	properties: {
		state: { type: "string", enum: ["running", "exited", "all"] },
		label: { type: "string", pattern: "^[^=]+=.*$", description: "k=v" },
	},
} as const;

export const logsQuery = {
	type: "object",
	additionalProperties: false,
	properties: {
		follow: { type: "string", enum: ["true", "false", "1", "0"] },
		offset: { type: "string", pattern: "^[0-9]{1,15}$" },
	},
} as const;
