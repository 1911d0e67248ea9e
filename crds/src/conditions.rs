//! Condition types, reasons and phases, in one place.

/// The object's children exist and are available.
pub const READY: &str = "Ready";
/// The controller is rolling out a change.
pub const PROGRESSING: &str = "Progressing";
/// The object cannot reach its desired state; the reason says why.
pub const DEGRADED: &str = "Degraded";
/// A Template passed validation.
pub const VALID: &str = "Valid";

/// Reasons used in conditions.
pub mod reasons {
    /// Every child exists and every Deployment is available.
    pub const AVAILABLE: &str = "Available";
    /// Children are being created or rolled out.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// Nothing is wrong.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// The referenced Template does not exist.
    pub const TEMPLATE_NOT_FOUND: &str = "TemplateNotFound";
    /// The referenced Template is not valid.
    pub const TEMPLATE_INVALID: &str = "TemplateInvalid";
    /// The spec breaks a rule (allow-list, missing parameter, bad image).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A required parameter has no value.
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    /// The image's registry is not on the allow-list.
    pub const REGISTRY_NOT_ALLOWED: &str = "RegistryNotAllowed";
    /// The namespace belongs to no UserSandbox.
    pub const SANDBOX_NOT_FOUND: &str = "SandboxNotFound";
    /// The UserDeployment is suspended: scaled to zero.
    pub const SUSPENDED: &str = "Suspended";
    /// Talking to the Kubernetes API failed; the controller retries.
    pub const API_ERROR: &str = "ApiError";
    /// The namespace and its policies are in place.
    pub const PROVISIONED: &str = "Provisioned";
    /// The namespace is in place but Kubernetes has not counted its ResourceQuota yet: until it
    /// has, the quota admission refuses every object it counts ("status unknown for quota").
    pub const QUOTA_PENDING: &str = "QuotaPending";
    /// The namespace is owned by something else.
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    /// The sandbox's namespace is a system or platform namespace (`kube-*`, `default`, the
    /// platform's, the ingress controller's, ...): the controller never provisions it.
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    /// Another UserSandbox with the same owner user id is older: one owner id, one sandbox. The
    /// newer sandbox gets no namespace and its apps get no children.
    pub const OWNER_CONFLICT: &str = "OwnerConflict";
    /// The app's host `<user-id>-<app>` is already used by an older app (of any sandbox): the
    /// app gets no children and no Ingress until it is renamed or the other app goes.
    pub const HOST_CONFLICT: &str = "HostConflict";
    /// A child or Secret name of the app (`<app>-<service>`, `<app>-<service>-secrets`, ...) is
    /// already one of an older app of the same sandbox: rename one of them.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// The app runs, but the platform Gateway does not accept its HTTPRoute (or cannot resolve
    /// its backend): the route's parent status says why. Ready does not depend on it.
    pub const ROUTE_NOT_ACCEPTED: &str = "RouteNotAccepted";
    /// The Template passed validation.
    pub const VALIDATED: &str = "Validated";
    /// The Template failed validation.
    pub const INVALID: &str = "Invalid";
}
