//! Plans and the quotas they grant: the one documented table.
//!
//! | plan       | deployments | pods | requests.cpu | requests.memory | limits.cpu | limits.memory | requests.ephemeral-storage | limits.ephemeral-storage | services |
//! |------------|-------------|------|--------------|-----------------|------------|---------------|----------------------------|--------------------------|----------|
//! | free       | 1           | 10   | 1            | 1Gi             | 2          | 2Gi           | 1Gi                        | 2Gi                      | 10       |
//! | business   | 10          | 60   | 8            | 16Gi            | 16         | 32Gi          | 8Gi                        | 16Gi                     | 60       |
//! | enterprise | unlimited   | 300  | 32           | 64Gi            | 64         | 128Gi         | 32Gi                       | 64Gi                     | 300      |
//!
//! Per organization (issue 16; the server enforces them, 403 naming the limit):
//!
//! | plan       | teams per organization | members per team |
//! |------------|------------------------|------------------|
//! | free       | 1                      | 1                |
//! | business   | 10                     | 10               |
//! | enterprise | unlimited              | unlimited        |
//!
//! What a plan costs (BILLING_ENABLED, issue 17) is configuration, not code: each paid plan is
//! bought as a subscription to a Stripe Price named by the server's variables, and running
//! app-time is reported to Stripe billing meters whose Prices Stripe holds.
//!
//! | plan       | Price (server variable)   | usage meters (server variables, defaults)                        |
//! |------------|---------------------------|------------------------------------------------------------------|
//! | free       | none                      | reported only for accounts with a Stripe customer                |
//! | business   | `STRIPE_PRICE_BUSINESS`   | `STRIPE_METER_CPU` (`app_cpu_core_minutes`), `STRIPE_METER_MEMORY` (`app_memory_gib_minutes`) |
//! | enterprise | `STRIPE_PRICE_ENTERPRISE` | the same                                                          |
//!
//! A plan without a Price cannot be bought; administrators can still set it. A downgrade
//! suspends the newest apps over the new deployments limit (docs/suspension.md).
//!
//! The HTTP server refuses a create beyond the deployments limit with 403; the sandbox's
//! ResourceQuota enforces the same count for objects applied with kubectl or GitOps.
//!
//! Every plan forbids NodePort and LoadBalancer services (quota of 0). Default container
//! requests/limits (LimitRange): 100m / 128Mi / 64Mi ephemeral storage requested, 500m / 512Mi /
//! 512Mi ephemeral storage limit. Ephemeral storage (a container's writable layer, its logs and
//! its emptyDir volumes) is under quota like CPU and memory, so one sandbox cannot fill a node's
//! disk; a container that writes past its limit is evicted by the kubelet.
//! A sandbox's `quotaOverrides` can raise it (`ephemeralStorage`, limit x2) as it raises CPU and
//! memory.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A billing plan; it drives the sandbox's ResourceQuota.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// The free tier.
    #[default]
    Free,
    /// The business tier.
    Business,
    /// The enterprise tier.
    Enterprise,
}

/// What a plan allows in one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// Most UserDeployments (`None`: unlimited).
    pub deployments: Option<i32>,
    /// Most pods.
    pub pods: i32,
    /// Sum of CPU requests.
    pub requests_cpu: &'static str,
    /// Sum of memory requests.
    pub requests_memory: &'static str,
    /// Sum of CPU limits.
    pub limits_cpu: &'static str,
    /// Sum of memory limits.
    pub limits_memory: &'static str,
    /// Sum of ephemeral storage requests.
    pub requests_ephemeral_storage: &'static str,
    /// Sum of ephemeral storage limits.
    pub limits_ephemeral_storage: &'static str,
    /// Most Services.
    pub services: i32,
    /// Most teams in an organization on this plan (`None`: unlimited).
    pub teams_per_org: Option<i32>,
    /// Most members of one team, pending invitations included (`None`: unlimited).
    pub members_per_team: Option<i32>,
}

impl Plan {
    /// The limits of this plan (the table in this module's documentation).
    pub fn limits(self) -> PlanLimits {
        match self {
            Plan::Free => PlanLimits {
                deployments: Some(1),
                pods: 10,
                requests_cpu: "1",
                requests_memory: "1Gi",
                limits_cpu: "2",
                limits_memory: "2Gi",
                requests_ephemeral_storage: "1Gi",
                limits_ephemeral_storage: "2Gi",
                services: 10,
                teams_per_org: Some(1),
                members_per_team: Some(1),
            },
            Plan::Business => PlanLimits {
                deployments: Some(10),
                pods: 60,
                requests_cpu: "8",
                requests_memory: "16Gi",
                limits_cpu: "16",
                limits_memory: "32Gi",
                requests_ephemeral_storage: "8Gi",
                limits_ephemeral_storage: "16Gi",
                services: 60,
                teams_per_org: Some(10),
                members_per_team: Some(10),
            },
            Plan::Enterprise => PlanLimits {
                deployments: None,
                pods: 300,
                requests_cpu: "32",
                requests_memory: "64Gi",
                limits_cpu: "64",
                limits_memory: "128Gi",
                requests_ephemeral_storage: "32Gi",
                limits_ephemeral_storage: "64Gi",
                services: 300,
                teams_per_org: None,
                members_per_team: None,
            },
        }
    }

    /// The most UserDeployments a sandbox on this plan may have: `override_limit` (the
    /// sandbox's `spec.quotaOverrides.deployments`) when set, else the plan's (`None`:
    /// unlimited). The one rule for the HTTP server's 403 on create, the sandbox's ResourceQuota
    /// and the controller's suspension of apps over the limit.
    pub fn deployment_limit(self, override_limit: Option<i32>) -> Option<i32> {
        override_limit.or(self.limits().deployments)
    }

    /// Parses a plan's name as written in specs.
    pub fn parse(s: &str) -> Option<Plan> {
        [Plan::Free, Plan::Business, Plan::Enterprise]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// The plan's name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Business => "business",
            Plan::Enterprise => "enterprise",
        }
    }
}

/// Default container resources a LimitRange gives containers that set none.
pub const DEFAULT_REQUEST_CPU: &str = "100m";
/// See [`DEFAULT_REQUEST_CPU`].
pub const DEFAULT_REQUEST_MEMORY: &str = "128Mi";
/// See [`DEFAULT_REQUEST_CPU`].
pub const DEFAULT_LIMIT_CPU: &str = "500m";
/// See [`DEFAULT_REQUEST_CPU`].
pub const DEFAULT_LIMIT_MEMORY: &str = "512Mi";
/// See [`DEFAULT_REQUEST_CPU`].
pub const DEFAULT_REQUEST_EPHEMERAL_STORAGE: &str = "64Mi";
/// See [`DEFAULT_REQUEST_CPU`].
pub const DEFAULT_LIMIT_EPHEMERAL_STORAGE: &str = "512Mi";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_wins_over_the_plan_and_enterprise_is_unlimited() {
        assert_eq!(Plan::Free.deployment_limit(None), Some(1));
        assert_eq!(Plan::Business.deployment_limit(None), Some(10));
        assert_eq!(Plan::Enterprise.deployment_limit(None), None);
        // An override raises or lowers the plan's number, and bounds even enterprise.
        assert_eq!(Plan::Free.deployment_limit(Some(3)), Some(3));
        assert_eq!(Plan::Business.deployment_limit(Some(0)), Some(0));
        assert_eq!(Plan::Enterprise.deployment_limit(Some(50)), Some(50));
    }
}
