import { type Static, type TSchema, Type } from "@sinclair/typebox";

// Helpers for declaring a shape once: the TypeBox value is the JSON Schema
// (validators, OpenAPI, response serialization) and Static<> is its type.

/** A value that may be unmeasured (null), never a fake 0. */
export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

/** A string enum as JSON Schema's `enum` (reads better in OpenAPI than anyOf of consts). */
export const StringEnum = <const T extends readonly string[]>(values: T, o: { description?: string } = {}) =>
	Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...o });

/**
 * An object of string values whose keys match `keyPattern` (labels, env):
 * JSON Schema's propertyNames, which TypeBox's Record does not emit.
 */
export const StringMap = (keyPattern: string, o: { maxValueLength: number; maxProperties: number; valuePattern?: string }) =>
	Type.Unsafe<Record<string, string>>({
		type: "object",
		maxProperties: o.maxProperties,
		propertyNames: { pattern: keyPattern },
		additionalProperties: { type: "string", maxLength: o.maxValueLength, ...(o.valuePattern ? { pattern: o.valuePattern } : {}) },
	});

export type { Static, TSchema };
export { Type };
