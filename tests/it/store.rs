//! Faults under the durable local store: a full disk, damaged files,
//! `revgate store verify`.

use crate::support::*;
use hyper::StatusCode;
use revgate::config::{OnStoreDown, RevocationConfig, StoreKind};
use revgate::revocation::{Policy, RevocationKey, Revocations};
use revgate::telemetry::metrics::Metrics;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The log file inside a store directory.
const LOG: &str = "revocations.log";

fn revocation_config(dir: &Path) -> RevocationConfig {
    RevocationConfig {
        store: StoreKind::Local,
        path: Some(dir.to_path_buf()),
        capacity: 1_000_000,
        redis_url: None,
        redis_prefix: "revgate:".into(),
        on_store_down: OnStoreDown::Deny,
        max_staleness: revgate::config::DEFAULT_MAX_STALENESS,
    }
}

/// A store in `dir` holding `n` revocations (`store-0`...) and one
/// watermark, written by the library and closed.
async fn make_store(dir: &Path, n: u64) {
    let r = Revocations::open(
        &revocation_config(dir),
        Policy::new(Duration::from_secs(30), Duration::from_secs(3600)),
        Arc::new(Metrics::new(Vec::new())),
    )
    .await
    .expect("open store");
    let exp = now() + 3600;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..64 {
        let r = Arc::clone(&r);
        tasks.spawn(async move {
            for i in (c..n).step_by(64) {
                r.revoke(RevocationKey::from_jti(&format!("store-{i}")), exp)
                    .await
                    .expect("revoke");
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.expect("task");
    }
    r.revoke_subject("alice", now()).await.expect("watermark");
    r.close().await;
}

/// Runs the gateway binary on the store in `dir`. A gateway that starts
/// (listens) on a store it should have refused fails the test.
fn start_binary(dir: &Path) -> Output {
    let cfg = auth_config(
        "http://127.0.0.1:1",
        &format!("path = {:?}", dir.display().to_string()),
    );
    let cfg = format!("[server]\nlisten = \"127.0.0.1:0\"\n{cfg}");
    let path = dir.with_extension("toml");
    std::fs::write(&path, cfg).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_revgate"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the gateway is running on a damaged store: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn verify(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revgate"))
        .args(["store", "verify", "--path"])
        .arg(path)
        .output()
        .expect("run store verify")
}

/// Exit status 2 and exactly one line on stderr, naming the log file.
fn assert_refused(out: &Output, file: &Path, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("damaged"),
        "{what}: does not name the file: {err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// A store of 5000 entries, damaged by `damage`, makes the gateway refuse to
/// start (exit 2, one line naming the file) and `store verify` report it.
async fn refuses_when(name: &str, damage: impl FnOnce(&mut Vec<u8>)) {
    let dir = temp_dir(name).join("store");
    make_store(&dir, 5000).await;
    let file = dir.join(LOG);
    let mut bytes = std::fs::read(&file).expect("read log");
    assert!(bytes.len() > 100_000, "store too small: {}", bytes.len());
    damage(&mut bytes);
    std::fs::write(&file, &bytes).expect("damage");
    let out = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || start_binary(&dir)
    })
    .await
    .expect("run");
    assert_refused(&out, &file, "gateway");
    assert_refused(&verify(&dir), &file, "store verify");
}

/// Truncated to 0 bytes: not an empty blocklist, a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_truncated_to_zero_bytes_refuses_to_start() {
    refuses_when("store-zero", |b| b.clear()).await;
}

/// Truncated to half: not a partial blocklist, a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_truncated_to_half_refuses_to_start() {
    refuses_when("store-half", |b| b.truncate(b.len() / 2)).await;
}

/// A zeroed 4 KiB page in the middle (a lost write), and the header page
/// zeroed: refusals, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_with_zeroed_pages_refuses_to_start() {
    refuses_when("store-zeroed", |b| {
        let mid = (b.len() / 2) & !4095;
        b[mid..mid + 4096].fill(0);
    })
    .await;
    refuses_when("store-zeroed-header", |b| b[..4096].fill(0)).await;
}

/// 100 flipped bytes spread over the file (bit rot): a refusal, not a store
/// that opens and forgets ten revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_with_flipped_bytes_refuses_to_start() {
    refuses_when("store-flipped", |b| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % b.len() as u64) as usize;
            b[at] ^= 0x5A;
        }
    })
    .await;
    // A single flipped bit in the last committed byte is enough. (The
    // zeros the writer preallocates past it are not records: damage there
    // loses nothing.)
    refuses_when("store-one-bit", |b| {
        let committed = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        b[committed as usize - 1] ^= 1;
    })
    .await;
}

/// `store verify` passes an intact store (one line, exit 0) and a store of
/// the previous (redb) build, which it names as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_verify_passes_intact_stores() {
    let dir = temp_dir("store-verify").join("store");
    make_store(&dir, 300).await;
    let out = verify(&dir);
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line.trim().lines().count(), 1, "{line}");
    assert!(
        line.contains("ok") && line.contains("300 revocations") && line.contains("1 watermarks"),
        "{line}"
    );
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-redb");
    let out = verify(&legacy);
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{line}");
    assert!(
        line.contains("redb") && line.contains("295 revocations"),
        "{line}"
    );
    // Nothing there at all is not "ok".
    assert_eq!(verify(&temp_dir("store-none")).status.code(), Some(2));
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with a notice) where mounting is not permitted.
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = temp_dir(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP {name}: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem under `dir` with `dir/filler` until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0xA5u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

async fn revoke_jti(gw: &Gateway, jti: &str) -> StatusCode {
    let body = json!({"jti": jti, "expires_at": now() + 3600}).to_string();
    admin(gw, "POST", "/admin/revocations", &body).await.status
}

async fn readyz(gw: &Gateway) -> StatusCode {
    get(&gw.admin_url("/readyz"), &[]).await.status
}

/// The disk fills up (ENOSPC on a tmpfs): revocations answer 503 and record
/// nothing, `/readyz` answers 503 while checks keep working from memory; once
/// space is back the store recovers by itself (no restart, no request
/// needed) and every acknowledged revocation survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_turns_readyz_503_and_recovers_without_restart() {
    let Some(fs) = Tmpfs::mount("store-enospc", "2m") else {
        return;
    };
    let up = Upstream::echo("up").await;
    let store = fs.0.join("store");
    let cfg = auth_config(
        &up.url(),
        &format!("path = {:?}", store.display().to_string()),
    );
    let mut gw = Gateway::start(&cfg).await;
    let mut acked = Vec::new();
    assert_eq!(revoke_jti(&gw, "before-fault").await, StatusCode::OK);
    acked.push("before-fault".to_owned());
    let revoked = token("bob", "orders:read");
    assert_eq!(
        post_with(&gw.url("/auth/logout"), &revoked).await.status,
        StatusCode::OK
    );
    let good = token("carol", "orders:read");

    let filler = fill(&fs.0);
    // Writes still fit in the zeros the log wrote ahead; each one answered
    // 200 is durable. The first one that needs new space fails.
    let mut refused = None;
    for n in 0..20_000 {
        let jti = format!("during-fault-{n}");
        match revoke_jti(&gw, &jti).await {
            StatusCode::OK => acked.push(jti),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = Some(jti);
                break;
            }
            other => panic!("revocation on a full disk answered {other}"),
        }
    }
    let refused = refused.expect("a full disk never refused a write");
    eventually("/readyz 503 on a full disk", Duration::from_secs(5), || {
        let gw = &gw;
        async move { readyz(gw).await == StatusCode::SERVICE_UNAVAILABLE }
    })
    .await;
    assert_eq!(
        revoke_jti(&gw, "still-full").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let got = admin(&gw, "GET", &format!("/admin/revocations/{refused}"), "").await;
    assert_eq!(
        got.status,
        StatusCode::NOT_FOUND,
        "a refused write was recorded"
    );
    // Checks keep answering from memory.
    assert_eq!(
        get_with(&gw.url("/api/x"), &good).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&gw.url("/api/x"), &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );

    std::fs::remove_file(&filler).expect("free space");
    eventually(
        "/readyz 200 once space is back, without any request",
        Duration::from_secs(15),
        || {
            let gw = &gw;
            async move { readyz(gw).await == StatusCode::OK }
        },
    )
    .await;
    assert_eq!(revoke_jti(&gw, "after-fault").await, StatusCode::OK);
    acked.push("after-fault".to_owned());

    gw.shutdown();
    let _ = (&mut gw.task).await;
    let gw = Gateway::start(&cfg).await;
    for jti in &acked {
        let got = admin(&gw, "GET", &format!("/admin/revocations/{jti}"), "").await;
        assert_eq!(got.status, StatusCode::OK, "{jti} lost after the fault");
    }
    assert_eq!(
        get_with(&gw.url("/api/x"), &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );
    let out = verify(&store);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// On a full disk, a run of refused revocations logs one ERROR line for the
/// fault (not one or three per request), and one line when it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_logs_one_error_line_per_fault() {
    let Some(fs) = Tmpfs::mount("store-enospc-log", "2m") else {
        return;
    };
    let (port, admin_port) = (free_port(), free_port());
    let store = fs.0.join("store");
    let cfg = auth_config(
        "http://127.0.0.1:1",
        &format!("path = {:?}", store.display().to_string()),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{admin_port}\""),
    );
    let cfg = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{cfg}");
    let path = fs.0.join("gateway.toml");
    std::fs::write(&path, cfg).expect("write config");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_revgate"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway"),
    );
    let child = &mut child.0;
    // Drained as it comes: a full pipe would block the gateway's logging.
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let admin_base = format!("http://127.0.0.1:{admin_port}");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let revoke = |jti: String| {
        let (url, auth) = (format!("{admin_base}/admin/revocations"), auth.clone());
        async move {
            let body = json!({"jti": jti, "expires_at": now() + 3600}).to_string();
            send("POST", &url, &[("authorization", &auth)], &body)
                .await
                .status
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(revoke("first".into()).await, StatusCode::OK);
    let filler = fill(&fs.0);
    let mut refused = 0;
    for n in 0..20_000 {
        if revoke(format!("full-{n}")).await == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
            if refused == 20 {
                break;
            }
        }
    }
    assert_eq!(refused, 20, "a full disk did not refuse writes");
    std::fs::remove_file(&filler).expect("free space");
    let ready = format!("{admin_base}/readyz");
    eventually("recovered", Duration::from_secs(15), || {
        let ready = ready.clone();
        async move { get(&ready, &[]).await.status == StatusCode::OK }
    })
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = child.wait();
    let log = log.join().expect("log reader");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("revocation store write failed"), "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("revocation store writable again"))
            .count(),
        1,
        "{log}"
    );
}
