//! The access log, seen from outside: one line per request in a file, with
//! what an operator needs and never a token.

use crate::support::*;
use hyper::StatusCode;
use std::time::Duration;

/// Waits until the log file holds at least `n` lines.
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    eventually("access log lines", Duration::from_secs(10), || {
        got = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let ok = got.len() >= n;
        async move { ok }
    })
    .await;
    got
}

/// A forwarded request and a revoked one each get a JSON line naming the
/// route, outcome, status, subject and token id; the query (where a
/// `query:` source would carry a token) and the token itself never appear.
#[tokio::test]
async fn json_lines_name_outcome_and_subject_never_the_token() {
    let up = Upstream::echo("up").await;
    let dir = temp_dir("access-json");
    let path = dir.join("access.log");
    let gw = Gateway::start(&auth_config(
        &up.url(),
        &format!(
            "[access_log]\nformat = \"json\"\npath = {:?}\n",
            path.display().to_string()
        ),
    ))
    .await;
    let jti = unique("al");
    let t = hs256(&claims("ada", &jti, "orders:read"));
    // The same token in the query as in Authorization: one credential.
    let url = gw.url(&format!("/api/orders?q=secret-in-query&access_token={t}"));
    assert_eq!(get_with(&url, &t).await.status, StatusCode::OK);
    assert_eq!(
        post_with(&gw.url("/auth/logout"), &t).await.status,
        StatusCode::OK
    );
    assert_eq!(get_with(&url, &t).await.status, StatusCode::UNAUTHORIZED);
    let got = lines(&path, 3).await;
    let v: Vec<serde_json::Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(v[0]["path"], "/api/orders");
    assert_eq!(v[0]["method"], "GET");
    assert_eq!(v[0]["status"], 200);
    assert_eq!(v[0]["route"], "/api/");
    assert_eq!(v[0]["outcome"], "forwarded");
    assert_eq!(v[0]["sub"], "ada");
    assert_eq!(v[0]["token"], jti.as_str());
    assert!(v[0]["upstream_ms"].as_f64().is_some());
    assert!(v[0]["bytes"].as_u64().is_some_and(|b| b > 0), "{}", got[0]);
    assert_eq!(v[1]["outcome"], "served");
    assert_eq!(v[2]["status"], 401);
    assert_eq!(v[2]["outcome"], "revoked");
    let text = got.join("\n");
    assert!(!text.contains("secret-in-query"), "{text}");
    assert!(!text.contains(&t), "the token itself is never logged");
    let sig = t.rsplit('.').next().expect("signature");
    assert!(!text.contains(sig), "{text}");
}

/// Text lines: a token without `jti` is named by its SHA-256 prefix; a
/// request that matched no route is logged too; a crafted path cannot
/// break the line.
#[tokio::test]
async fn text_lines_fingerprint_tokens_without_jti() {
    let up = Upstream::echo("up").await;
    let dir = temp_dir("access-text");
    let path = dir.join("access.log");
    let gw = Gateway::start(&format!(
        "{}\n[access_log]\npath = {:?}\n",
        auth_config(&up.url(), "").replace("prefix = \"/\"\n", "prefix = \"/open/\"\n"),
        path.display().to_string()
    ))
    .await;
    let t = hs256(&serde_json::json!({
        "sub": "bo", "scope": "orders:read", "exp": now() + 600, "iat": now()
    }));
    assert_eq!(get_with(&gw.url("/api/x"), &t).await.status, StatusCode::OK);
    assert_eq!(
        get(&gw.url("/nowhere%22x"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let got = lines(&path, 2).await;
    let fp = revgate::revocation::token_fingerprint(&t);
    assert!(
        got[0].contains("\"GET /api/x\" 200 route=/api/ outcome=forwarded"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains(&format!("sub=\"bo\" token={fp}")),
        "{}",
        got[0]
    );
    assert!(
        got[1].contains(" 404 route=- outcome=not_found"),
        "{}",
        got[1]
    );
    assert_eq!(got.len(), 2, "{got:?}");
}

/// The access log's file is reopened on request (logrotate moves the file,
/// then signals): later lines go to the new file.
#[tokio::test]
async fn reopen_writes_to_the_new_file() {
    let up = Upstream::echo("up").await;
    let dir = temp_dir("access-reopen");
    let path = dir.join("access.log");
    let gw = Gateway::start(&format!(
        "[access_log]\npath = {:?}\n[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
        path.display().to_string(),
        up.url()
    ))
    .await;
    get(&gw.url("/one"), &[]).await;
    lines(&path, 1).await;
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    gw.access_log().expect("access log on").reopen();
    // The reopen is taken up by the writer before or with the next batch.
    eventually("reopened file", Duration::from_secs(10), || {
        let exists = path.exists();
        async move { exists }
    })
    .await;
    get(&gw.url("/two"), &[]).await;
    let new = lines(&path, 1).await;
    assert!(new[0].contains("/two"), "{new:?}");
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert!(old.contains("/one") && !old.contains("/two"), "{old}");
}

/// The binary reopens its access log on SIGUSR1, as logrotate's
/// `postrotate` sends it: after the file is renamed and the signal sent, a
/// request's line goes to a new file at the configured path, and the
/// process goes on serving.
#[cfg(unix)]
#[tokio::test]
async fn sigusr1_reopens_the_access_log_of_the_running_binary() {
    /// Ends the gateway process however the test ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let up = Upstream::echo("up").await;
    let dir = temp_dir("access-sigusr1");
    let path = dir.join("access.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[access_log]\npath = {:?}\n\
             [[route]]\nprefix = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
            path.display().to_string(),
            up.url()
        ),
    )
    .expect("write config");
    let mut gateway = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_revgate"))
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn revgate"),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(
        "the gateway listening",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(
        get(&format!("{base}/one"), &[]).await.status,
        StatusCode::OK
    );
    lines(&path, 1).await;
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    let usr1 = std::process::Command::new("kill")
        .args(["-USR1", &gateway.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(usr1.success());
    // The signal is handled asynchronously: requests made before it are
    // logged to the renamed file, so send until one lands in a new one.
    let (base, path) = (&base, &path);
    eventually(
        "a line in a new file at the path",
        Duration::from_secs(10),
        || async move {
            get(&format!("{base}/two"), &[]).await;
            std::fs::read_to_string(path).is_ok_and(|t| t.contains("/two"))
        },
    )
    .await;
    assert!(
        gateway.0.try_wait().expect("wait").is_none(),
        "SIGUSR1 ended the process"
    );
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert!(old.contains("/one"), "{old}");
    let new = std::fs::read_to_string(path).expect("new");
    assert!(!new.contains("/one"), "{new}");
}
