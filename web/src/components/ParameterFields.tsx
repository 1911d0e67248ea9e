// Form fields generated from a template's parameters: a select for enums and booleans, a number
// input for numbers, a masked input for secrets, text otherwise. Errors are shown next to the
// field and announced (aria-invalid + aria-describedby).
import { useState } from "react";
import type { Parameter } from "../api/types";

type Props = {
  parameters: Parameter[];
  values: Record<string, string>;
  errors: Record<string, string>;
  onChange: (name: string, value: string) => void;
  onBlur?: (name: string) => void;
  /** Secret parameters whose value is stored already (editing): empty keeps it. */
  storedSecrets?: Set<string>;
  idPrefix?: string;
};

export function ParameterFields({ parameters, values, errors, onChange, onBlur, storedSecrets, idPrefix = "param" }: Props) {
  if (parameters.length === 0) return <p className="muted">This template has no parameters.</p>;
  return (
    <>
      {parameters.map((p) => (
        <ParameterField
          key={p.name}
          p={p}
          id={`${idPrefix}-${p.name}`}
          value={values[p.name] ?? ""}
          error={errors[p.name]}
          stored={storedSecrets?.has(p.name) ?? false}
          onChange={(v) => onChange(p.name, v)}
          onBlur={() => onBlur?.(p.name)}
        />
      ))}
    </>
  );
}

type FieldProps = {
  p: Parameter;
  id: string;
  value: string;
  error?: string;
  stored: boolean;
  onChange: (v: string) => void;
  onBlur: () => void;
};

function ParameterField({ p, id, value, error, stored, onChange, onBlur }: FieldProps) {
  const [reveal, setReveal] = useState(false);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const describedBy = [p.description || p.pattern || p.secret ? hintId : null, error ? errorId : null]
    .filter(Boolean)
    .join(" ") || undefined;
  const common = {
    id,
    name: p.name,
    "aria-invalid": error ? true : undefined,
    "aria-describedby": describedBy,
    "aria-required": p.required && !stored ? true : undefined,
    onBlur,
  } as const;

  let input: React.ReactNode;
  if (p.secret) {
    input = (
      <div className="input-group">
        <input
          {...common}
          type={reveal ? "text" : "password"}
          autoComplete="new-password"
          spellCheck={false}
          value={value}
          placeholder={stored ? "stored — leave empty to keep it" : undefined}
          onChange={(e) => onChange(e.target.value)}
        />
        <button
          type="button"
          className="btn btn-small"
          aria-pressed={reveal}
          aria-controls={id}
          onClick={() => setReveal((r) => !r)}
        >
          {reveal ? "Hide" : "Show"}
        </button>
      </div>
    );
  } else if (p.type === "enum" || p.type === "boolean") {
    const options = p.type === "enum" ? (p.enum ?? []) : ["true", "false"];
    input = (
      <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
        {(!p.required || !options.includes(value)) && <option value="">{p.required ? "Choose…" : "(not set)"}</option>}
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  } else {
    input = (
      <input
        {...common}
        type="text"
        inputMode={p.type === "number" ? "decimal" : undefined}
        spellCheck={false}
        autoComplete="off"
        value={value}
        placeholder={p.default ?? undefined}
        onChange={(e) => onChange(e.target.value)}
      />
    );
  }

  return (
    <div className={`field${error ? " field-invalid" : ""}`}>
      <label htmlFor={id}>
        <code className="param-name">{p.name}</code>
        {p.required && !stored && (
          <span className="required" aria-hidden="true">
            {" "}
            *
          </span>
        )}
        {p.secret && <span className="badge badge-muted badge-inline">secret</span>}
        {p.type !== "string" && p.type !== "enum" && <span className="badge badge-muted badge-inline">{p.type}</span>}
      </label>
      {input}
      {(p.description || p.pattern || p.secret) && (
        <p className="hint" id={hintId}>
          {p.description}
          {p.pattern && (
            <>
              {p.description ? " " : ""}Must match <code>{p.pattern}</code>.
            </>
          )}
          {p.secret && <> {p.description ? "" : " "}Stored with the secrets API, never in the deployment.</>}
        </p>
      )}
      {error && (
        <p className="field-error" id={errorId}>
          {error}
        </p>
      )}
    </div>
  );
}
