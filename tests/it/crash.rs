//! Durability across `kill -9`: every acknowledged revocation survives.

use crate::support::*;
use hyper::StatusCode;
use serde_json::json;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(config: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_revgate"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn gateway");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Several clients revoke concurrently (admin API by jti, and logout with
/// tokens); the process is SIGKILLed at an arbitrary moment; after restart
/// every revocation that had been answered 200 is still in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_revocations_survive_sigkill() {
    let up = Upstream::echo("up").await;
    let dir = temp_dir("crash");
    let (port, admin_port) = (free_port(), free_port());
    let cfg = auth_config(
        &up.url(),
        &format!("path = {:?}", dir.join("store").display().to_string()),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{admin_port}\""),
    );
    let cfg = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{cfg}");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).expect("write config");

    let mut child = start(&path, port);
    let base = format!("http://127.0.0.1:{port}");
    let admin_base = format!("http://127.0.0.1:{admin_port}");
    let acked_jtis = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    // Kill after an arbitrary number of acknowledgements (varies per run).
    let kill_after = 60 + (std::process::id() as usize % 140);
    let mut clients = Vec::new();
    for c in 0..6 {
        let (acked_jtis, acked_tokens) = (acked_jtis.clone(), acked_tokens.clone());
        let (base, admin_base) = (base.clone(), admin_base.clone());
        clients.push(tokio::spawn(async move {
            let auth = format!("Bearer {ADMIN_TOKEN}");
            for n in 0..10_000 {
                let ok = if c % 2 == 0 {
                    let jti = format!("crash-{c}-{n}");
                    let body = json!({"jti": jti, "expires_at": now() + 3600}).to_string();
                    let got = try_send(
                        "POST",
                        &format!("{admin_base}/admin/revocations"),
                        &[("authorization", &auth)],
                        &body,
                    )
                    .await;
                    let ok = got == Some(StatusCode::OK);
                    if ok {
                        acked_jtis.lock().expect("lock").push(jti);
                    }
                    ok
                } else {
                    let t = token(&format!("user-{c}"), "orders:read");
                    let got = try_send(
                        "POST",
                        &format!("{base}/auth/logout"),
                        &[("authorization", &format!("Bearer {t}"))],
                        "",
                    )
                    .await;
                    let ok = got == Some(StatusCode::OK);
                    if ok {
                        acked_tokens.lock().expect("lock").push(t);
                    }
                    ok
                };
                if !ok {
                    return; // the gateway is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let acked =
            acked_jtis.lock().expect("lock").len() + acked_tokens.lock().expect("lock").len();
        if acked >= kill_after {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clients made too little progress ({acked} acks)"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = child.wait();
    for c in clients {
        let _ = c.await;
    }
    let jtis = acked_jtis.lock().expect("lock").clone();
    let tokens = acked_tokens.lock().expect("lock").clone();
    assert!(jtis.len() + tokens.len() >= kill_after);

    let mut child = start(&path, port);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut lost = 0;
    for jti in &jtis {
        let got = send(
            "GET",
            &format!("{admin_base}/admin/revocations/{jti}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
        if got.status != StatusCode::OK {
            lost += 1;
        }
    }
    for t in &tokens {
        let got = get(
            &format!("{base}/api/x"),
            &[("authorization", &format!("Bearer {t}"))],
        )
        .await;
        if got.status != StatusCode::UNAUTHORIZED {
            lost += 1;
        }
    }
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    eprintln!(
        "crash test: {} acknowledged revocations checked, {lost} lost",
        jtis.len() + tokens.len()
    );
    assert_eq!(lost, 0, "acknowledged revocations lost after SIGKILL");
}

/// Like `send`, but a transport error (the gateway was killed) is `None`.
async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<StatusCode> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .ok()?;
    let resp = client().request(req).await.ok()?;
    Some(resp.status())
}
