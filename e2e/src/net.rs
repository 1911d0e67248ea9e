//! A TCP relay, for services the tests run on loopback (PostgreSQL) that pods on a real node must
//! reach: pods cannot reach this machine's 127.0.0.1, but they can reach the node's bridge
//! address, so the relay listens there and connects to the loopback port.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running relay; stops when dropped.
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `listen` (port 0: a free one) and relays every connection to `target`.
pub async fn relay(listen: SocketAddr, target: SocketAddr) -> Result<Relay> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding a relay on {listen} (is it an address of this machine?)"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(Relay { addr, task })
}
