//! Waiting on conditions with a timeout.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Result, bail};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Waits until `condition` holds for the object `name`, or fails after `timeout` naming what was
/// awaited and the object's last known state.
pub async fn wait_for<K, C>(api: &Api<K>, name: &str, timeout: Duration, what: &str, condition: C) -> Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    C: Condition<K>,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => bail!("{what}: {name} was deleted while waiting"),
        Ok(Err(e)) => Err(anyhow::Error::from(e).context(format!("{what}: watching {name}"))),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            bail!("{what}: {name} not reached after {timeout:?}; last state: {last:?}")
        }
    }
}

/// Waits until the object `name` no longer exists.
pub async fn wait_until_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let gone = |obj: Option<&K>| obj.is_none();
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, gone)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow::Error::from(e).context(format!("waiting for {name} to be deleted"))),
        Err(_) => bail!("{name} still exists {timeout:?} after deletion"),
    }
}

/// Polls an async check every 200 ms until it returns `Some`, or fails after `timeout`.
/// For states no watch condition expresses (e.g. a list of pods).
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_err {
                Some(e) => bail!("{what}: not reached after {timeout:?}; last error: {e:#}"),
                None => bail!("{what}: not reached after {timeout:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
