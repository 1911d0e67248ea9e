import { useState } from "react";
import { Modal } from "./Modal";
import { InlineError } from "./States";

type Props = {
  title: string;
  children: React.ReactNode;
  confirmLabel: string;
  /** When set, the user must type this to confirm. */
  typeToConfirm?: string;
  busy?: boolean;
  error?: unknown;
  onConfirm: () => void;
  onCancel: () => void;
};

/** A destructive action's confirmation. */
export function ConfirmDialog({ title, children, confirmLabel, typeToConfirm, busy, error, onConfirm, onCancel }: Props) {
  const [typed, setTyped] = useState("");
  const ok = !typeToConfirm || typed === typeToConfirm;
  return (
    <Modal
      title={title}
      onClose={onCancel}
      footer={
        <>
          <button type="button" className="btn" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" form="confirm-form" className="btn btn-danger" disabled={!ok || busy}>
            {busy ? "Working…" : confirmLabel}
          </button>
        </>
      }
    >
      <form
        id="confirm-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (ok && !busy) onConfirm();
        }}
      >
        {children}
        {typeToConfirm && (
          <div className="field">
            <label htmlFor="confirm-input">
              Type <code>{typeToConfirm}</code> to confirm
            </label>
            <input
              id="confirm-input"
              data-autofocus
              autoComplete="off"
              spellCheck={false}
              value={typed}
              onChange={(e) => setTyped(e.target.value)}
            />
          </div>
        )}
        <InlineError error={error} />
      </form>
    </Modal>
  );
}
