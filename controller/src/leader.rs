//! Lease-based leader election (coordination.k8s.io/v1 Lease), the client-go way.
//!
//! Deviation from the chosen crate list: `kube-leader-election` 0.44 is built on kube 4 and
//! k8s-openapi 0.28, so using it would put a second kube and k8s-openapi next to ours (kube 5,
//! k8s-openapi 0.29). This module is the same algorithm in ~200 lines on our own client.
//!
//! - A candidate takes the Lease when it is free, or when its record (holder and renew time) has
//!   not changed for one lease duration as seen on the candidate's own monotonic clock (no trust
//!   in other machines' wall clocks).
//! - The leader renews every `lease_duration / 3` and considers itself leader only while its
//!   last successful renewal is younger than the renew deadline (`2/3` of the lease duration):
//!   [`Leader::is_leader`] is checked before every write, so a leader that was paused, partitioned
//!   or lost its Lease stops writing before any standby can take over.
//! - Updates use the Lease's resourceVersion (optimistic concurrency): two candidates never both
//!   win.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::Mutex;
use tokio::sync::watch;

/// Whether this process may write, shared by every reconciler.
#[derive(Clone)]
pub struct Leader {
    inner: Arc<Inner>,
}

struct Inner {
    /// Leader election off: always leader.
    always: bool,
    holding: AtomicBool,
    renewed_at: Mutex<Option<Instant>>,
    renew_deadline: Duration,
    lost: watch::Sender<bool>,
}

impl Leader {
    /// Leader election disabled: this process always writes.
    pub fn always() -> Self {
        let (lost, _) = watch::channel(false);
        Leader {
            inner: Arc::new(Inner {
                always: true,
                holding: AtomicBool::new(true),
                renewed_at: Mutex::new(None),
                renew_deadline: Duration::MAX,
                lost,
            }),
        }
    }

    /// Whether this process holds a fresh Lease and may write now.
    pub fn is_leader(&self) -> bool {
        if self.inner.always {
            return true;
        }
        if !self.inner.holding.load(Ordering::SeqCst) {
            return false;
        }
        let renewed = *self.inner.renewed_at.lock().unwrap_or_else(|e| e.into_inner());
        renewed.is_some_and(|t| t.elapsed() < self.inner.renew_deadline)
    }

    /// Resolves when leadership is lost (never, with election off).
    pub async fn lost(&self) {
        let mut rx = self.inner.lost.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn mark_renewed(&self) {
        *self.inner.renewed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.inner.holding.store(true, Ordering::SeqCst);
    }

    fn mark_lost(&self) {
        self.inner.holding.store(false, Ordering::SeqCst);
        let _ = self.inner.lost.send(true);
    }
}

/// Settings of an election.
#[derive(Clone, Debug)]
pub struct Election {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This candidate's identity.
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
}

impl Election {
    fn retry_period(&self) -> Duration {
        self.lease_duration / 3
    }
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// What a candidate last saw of the Lease, and when (its own clock).
struct Observed {
    record: Option<(String, Option<MicroTime>)>,
    since: Instant,
}

/// Blocks until this candidate holds the Lease, then keeps renewing it in the background.
/// The returned [`Leader`] turns false when renewal fails for longer than the renew deadline.
pub async fn acquire(client: Client, election: Election) -> Leader {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let (lost, _) = watch::channel(false);
    let leader = Leader {
        inner: Arc::new(Inner {
            always: false,
            holding: AtomicBool::new(false),
            renewed_at: Mutex::new(None),
            renew_deadline: election.renew_deadline(),
            lost,
        }),
    };
    let mut observed = Observed {
        record: None,
        since: Instant::now(),
    };
    let mut waiting_logged = false;
    loop {
        match try_acquire_or_renew(&api, &election, &mut observed).await {
            Ok(true) => break,
            Ok(false) => {
                if !waiting_logged {
                    tracing::info!(lease = %election.name, holder = ?observed.record.as_ref().map(|r| &r.0), "standing by: another replica holds the lease");
                    waiting_logged = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the lease; retrying"),
        }
        tokio::time::sleep(election.retry_period()).await;
    }
    leader.mark_renewed();
    tracing::info!(identity = %election.identity, lease = %election.name, "became leader");

    let renewer = leader.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(election.retry_period()).await;
            match try_acquire_or_renew(&api, &election, &mut observed).await {
                Ok(true) => renewer.mark_renewed(),
                Ok(false) => {
                    tracing::error!("leader election: another replica took the lease; stopping");
                    renewer.mark_lost();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: renewing the lease failed");
                    if !renewer.is_leader() {
                        tracing::error!("leader election: could not renew within the deadline; stopping");
                        renewer.mark_lost();
                        return;
                    }
                }
            }
        }
    });
    leader
}

/// One round: take a free or expired Lease, or renew our own. Ok(false) when someone else holds it.
async fn try_acquire_or_renew(api: &Api<Lease>, e: &Election, observed: &mut Observed) -> Result<bool, kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let duration_secs = i32::try_from(e.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&e.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(e.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(e.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = Some((holder.clone(), spec.renew_time.clone()));
    if record != observed.record {
        observed.record = record;
        observed.since = Instant::now();
    }
    let ours = holder == e.identity;
    let held_for =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_secs)).unwrap_or(0));
    let expired = holder.is_empty() || observed.since.elapsed() >= held_for;
    if !ours && !expired {
        return Ok(false);
    }
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(e.identity.clone());
    new_spec.lease_duration_seconds = Some(duration_secs);
    new_spec.renew_time = Some(now.clone());
    if !ours {
        new_spec.acquire_time = Some(now);
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    lease.spec = Some(new_spec);
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api.replace(&e.name, &PostParams::default(), &lease).await {
        Ok(updated) => {
            let s = updated.spec.unwrap_or_default();
            observed.record = Some((s.holder_identity.unwrap_or_default(), s.renew_time));
            observed.since = Instant::now();
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}
