export * from "./ids.ts";
export * from "./types.ts";
export * from "./units.ts";
export * from "./wire.ts";
export * from "./stats-codec.ts";
export * from "./schema.ts";
export * from "./profiles.ts";
export * from "./api.ts";
