// The deploy form generated from a template's parameters. Nothing is sent until every field is
// valid; secret values go to the secrets API (see deployTemplate), never into the deployment.
import { useMemo, useRef, useState } from "react";
import { useDeploy } from "../api/hooks";
import type { Deployment, Template } from "../api/types";
import { generatedName, initialValues, validateAll, validateName, validateValue, NAME_MAX } from "../lib/params";
import { ParameterFields } from "./ParameterFields";
import { PlanLimitLink } from "./PlanLimitLink";
import { InlineError } from "./States";

type Props = {
  template: Template;
  onDeployed: (d: Deployment) => void;
  /** Fixed initial name (tests); generated otherwise. */
  initialName?: string;
};

export function DeployForm({ template, onDeployed, initialName }: Props) {
  const deploy = useDeploy();
  const formRef = useRef<HTMLFormElement>(null);
  const initial = useMemo(() => initialValues(template.parameters), [template.parameters]);
  const [values, setValues] = useState(initial);
  const [name, setName] = useState(() => initialName ?? generatedName(template.name));
  const [visibility, setVisibility] = useState<"public" | "internal">("public");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [nameError, setNameError] = useState<string | null>(null);
  const [touched, setTouched] = useState<Record<string, boolean>>({});

  const setValue = (k: string, v: string) => {
    setValues((old) => ({ ...old, [k]: v }));
    if (touched[k] || errors[k]) {
      const p = template.parameters.find((x) => x.name === k);
      const e = p ? validateValue(p, v) : null;
      setErrors((old) => {
        const next = { ...old };
        if (e) next[k] = e;
        else delete next[k];
        return next;
      });
    }
  };

  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    if (deploy.isPending) return;
    const errs = validateAll(template.parameters, values);
    const nErr = validateName(name);
    setErrors(errs);
    setNameError(nErr);
    setTouched(Object.fromEntries(template.parameters.map((p) => [p.name, true])));
    if (nErr || Object.keys(errs).length > 0) {
      // Move focus to the first field with a problem.
      requestAnimationFrame(() => formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus());
      return;
    }
    deploy.mutate(
      { template: template.name, name, parameters: template.parameters, values, visibility },
      { onSuccess: onDeployed },
    );
  };

  const problems = Object.keys(errors).length + (nameError ? 1 : 0);

  return (
    <form ref={formRef} className="form" onSubmit={submit} noValidate aria-label={`Deploy ${template.displayName || template.name}`}>
      <fieldset className="card" disabled={deploy.isPending}>
        <legend>Deployment</legend>
        <div className={`field${nameError ? " field-invalid" : ""}`}>
          <label htmlFor="deploy-name">Name</label>
          <input
            id="deploy-name"
            name="name"
            value={name}
            maxLength={NAME_MAX}
            spellCheck={false}
            autoComplete="off"
            aria-invalid={nameError ? true : undefined}
            aria-describedby={`deploy-name-hint${nameError ? " deploy-name-error" : ""}`}
            onChange={(e) => {
              setName(e.target.value);
              if (nameError) setNameError(validateName(e.target.value));
            }}
          />
          <p className="hint" id="deploy-name-hint">
            Part of the app's address; lower-case letters, digits and dashes, at most {NAME_MAX} characters.
          </p>
          {nameError && (
            <p className="field-error" id="deploy-name-error">
              {nameError}
            </p>
          )}
        </div>
        <div className="field">
          <span className="label" id="visibility-label">
            Visibility
          </span>
          <div className="segmented" role="radiogroup" aria-labelledby="visibility-label">
            {(["public", "internal"] as const).map((v) => (
              <label key={v} className={visibility === v ? "active" : undefined}>
                <input type="radio" name="visibility" value={v} checked={visibility === v} onChange={() => setVisibility(v)} />
                {v === "public" ? "Public (has a URL)" : "Internal only"}
              </label>
            ))}
          </div>
        </div>
      </fieldset>

      <fieldset className="card" disabled={deploy.isPending}>
        <legend>Parameters</legend>
        <ParameterFields
          parameters={template.parameters}
          values={values}
          errors={errors}
          onChange={setValue}
          onBlur={(k) => setTouched((t) => ({ ...t, [k]: true }))}
        />
      </fieldset>

      {problems > 0 && (
        <p className="inline-error" role="alert">
          {problems === 1 ? "One field needs attention." : `${problems} fields need attention.`}
        </p>
      )}
      <InlineError error={deploy.error} />
      <PlanLimitLink error={deploy.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={deploy.isPending}>
          {deploy.isPending ? "Deploying…" : "Deploy"}
        </button>
      </div>
    </form>
  );
}
