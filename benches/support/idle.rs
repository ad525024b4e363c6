//! Resident memory per idle keep-alive connection of an external server:
//! `cargo bench --bench load -- --idle 10000 --pid PID --target URL`.
//!
//! Reads the server's `VmRSS` (`/proc/PID/status`), opens `--idle`
//! connections (a bounded number connecting at once), sends one request on
//! each and reads its answer, keeps them all open and idle, waits for the
//! server's `VmRSS` to settle, and reports the growth divided by the
//! connections. The server must allow that many connections and open
//! files (`ulimit -n`), and keep idle connections longer than the run.

use crate::loadgen::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

/// Connections being opened at once: below the listen backlogs (nginx 511,
/// tokio 1024), so none is refused while the server accepts.
const CONNECTING_AT_ONCE: usize = 256;
/// How often, and for how long at most, `VmRSS` is read until it settles.
const SETTLE_POLL: Duration = Duration::from_millis(250);
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

/// What one run found.
pub struct IdleReport {
    pub connections: usize,
    /// Connections that got the expected answer and stayed open.
    pub open: usize,
    pub rss_before: u64,
    pub rss_after: u64,
}

impl IdleReport {
    /// Resident bytes added per open connection.
    pub fn bytes_per_connection(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.open.max(1) as f64
    }
}

/// `VmRSS` of process `pid`, in bytes.
pub fn resident_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))?;
    Ok(kb * 1024)
}

/// Opens `n` idle connections to `target` and measures `pid`'s growth.
pub async fn run(target: Arc<Target>, n: usize, pid: u32) -> Result<IdleReport, String> {
    // Warm the server (its upstream pool, its first allocations) on one
    // connection first, so the baseline is a server that has served.
    let (warm_stop, warm_rx) = watch::channel(false);
    if !one(target.clone(), None, warm_rx).await {
        return Err("the warm-up request failed".into());
    }
    drop(warm_stop);
    // Let the server notice the warm-up connection's close.
    tokio::time::sleep(SETTLE_POLL).await;
    let rss_before = resident_bytes(pid)?;

    let (stop, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<bool>(n.max(1));
    for _ in 0..n {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (target, stop_rx, done_tx) = (target.clone(), stop_rx.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _ = one(target, Some((permit, done_tx)), stop_rx).await;
        });
    }
    drop(done_tx);
    let mut open = 0;
    while let Some(ok) = done_rx.recv().await {
        open += usize::from(ok);
    }
    let rss_after = settled(pid).await?;
    let _ = stop.send(true);
    Ok(IdleReport {
        connections: n,
        open,
        rss_before,
        rss_after,
    })
}

/// Reads `VmRSS` until two readings a poll apart agree (the server has
/// finished with the last answers), or the deadline.
async fn settled(pid: u32) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let mut last = resident_bytes(pid)?;
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = resident_bytes(pid)?;
        if now == last || tokio::time::Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// One connection: one request, its whole answer, then idle until `stop`.
/// With `report`, says whether the answer was the expected one (and frees
/// the connecting slot) once it has been read.
async fn one(
    target: Arc<Target>,
    report: Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::mpsc::Sender<bool>,
    )>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let answered = async {
        let stream = TcpStream::connect(target.addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = target.path.clone();
        *req.headers_mut() = target.headers.clone();
        let mut conn = Box::pin(conn);
        let exchange = async {
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status();
            resp.into_body().collect().await.ok()?;
            Some(status == target.expect)
        };
        let ok = tokio::select! {
            ok = exchange => ok?,
            _ = conn.as_mut() => return None,
        };
        Some((ok, sender, conn))
    };
    let Some((ok, _sender, conn)) = answered.await else {
        if let Some((_, done)) = report {
            let _ = done.send(false).await;
        }
        return false;
    };
    if let Some((permit, done)) = report {
        drop(permit);
        let _ = done.send(ok).await;
    } else {
        return ok;
    }
    // Idle: the connection stays open (polled, so a close is noticed)
    // until the run ends.
    tokio::select! {
        _ = conn => {}
        _ = stop.changed() => {}
    }
    ok
}
