// Client-side checks of parameter values, mirroring the controller's (controller/src/validate.rs):
// required, number, boolean, enum and a pattern the whole value must match.
import type { Parameter } from "../api/types";

/** Initial form values: each parameter's default, or empty. */
export function initialValues(params: Parameter[], current?: Record<string, string>): Record<string, string> {
  const v: Record<string, string> = {};
  for (const p of params) {
    if (current && p.name in current) v[p.name] = current[p.name];
    else if (p.secret) v[p.name] = "";
    else v[p.name] = p.default ?? "";
  }
  return v;
}

/** Compiles a template's pattern as the controller applies it (anchored), or null if JavaScript cannot. */
export function compilePattern(pattern: string): RegExp | null {
  try {
    return new RegExp(`^(?:${pattern})$`, "u");
  } catch {
    try {
      return new RegExp(`^(?:${pattern})$`);
    } catch {
      return null;
    }
  }
}

/** The problem with `value` for parameter `p`, or null when it is acceptable. */
export function validateValue(p: Parameter, value: string, opts: { secretStored?: boolean } = {}): string | null {
  if (value === "") {
    if (p.required && !(p.secret && opts.secretStored)) return `${p.name} is required`;
    return null;
  }
  switch (p.type) {
    case "number":
      if (value.trim() === "" || !Number.isFinite(Number(value))) return `${p.name} must be a number`;
      break;
    case "boolean":
      if (value !== "true" && value !== "false") return `${p.name} must be true or false`;
      break;
    case "enum":
      if (!(p.enum ?? []).includes(value)) return `${p.name} must be one of ${(p.enum ?? []).join(", ")}`;
      break;
  }
  if (p.pattern) {
    const re = compilePattern(p.pattern);
    if (re && !re.test(value)) return `${p.name} must match the pattern ${p.pattern}`;
  }
  return null;
}

/** Problems by parameter name (only the parameters that have one). */
export function validateAll(
  params: Parameter[],
  values: Record<string, string>,
  opts: { secretStored?: (name: string) => boolean } = {},
): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const p of params) {
    const e = validateValue(p, values[p.name] ?? "", { secretStored: opts.secretStored?.(p.name) });
    if (e) errors[p.name] = e;
  }
  return errors;
}

/** A deployment name: a DNS label of at most 32 characters. */
export const NAME_MAX = 32;
export function validateName(name: string): string | null {
  if (!name) return "a name is required";
  if (name.length > NAME_MAX) return `at most ${NAME_MAX} characters`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name))
    return "lower-case letters, digits and dashes; starting and ending with a letter or digit";
  return null;
}

/** `<template>-<4 random [a-z0-9]>`, as the server would generate it. */
export function generatedName(template: string): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  const suffix = Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
  const base = template.slice(0, NAME_MAX - 5).replace(/-+$/, "");
  return `${base}-${suffix}`;
}

/** A secret's KEY. */
export const SECRET_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
