//! The binary: check-config exit codes and messages, SIGTERM handling.

use std::process::Command;

fn revgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revgate"))
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn check_config_accepts_the_repo_example() {
    let out = revgate()
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"),
        ])
        .env("REVGATE_HMAC_SECRET", "s".repeat(40))
        .env("REVGATE_ADMIN_TOKEN", "t".repeat(40))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_rejects_with_exit_2_and_one_line() {
    let path = write_config(
        "bad.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\nrequest_timeout = \"soon\"\n",
    );
    let out = revgate()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.request_timeout") && err.contains("\"soon\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = revgate()
        .args(["check-config", "--config", "/nonexistent/gateway.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serving_with_bad_config_serves_nothing() {
    let path = write_config(
        "bad-route.toml",
        "[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"sometimes\"\n",
    );
    let out = revgate().arg("--config").arg(&path).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("route[0].auth"));
}

#[test]
fn sigterm_exits_zero() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let path = write_config(
        "sigterm.toml",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"2s\"\n"),
    );
    let mut child = revgate().arg("--config").arg(&path).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not start listening"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_config_loads_keys_like_the_gateway() {
    let path = write_config(
        "missing-key.toml",
        "[jwt]\nalgorithms = [\"RS256\"]\npublic_key_file = \"/nonexistent/issuer.pub.pem\"\n",
    );
    let out = revgate()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jwt.public_key_file"), "{err}");
}

#[test]
fn unusable_redis_url_is_a_config_error_printed_once() {
    let path = write_config(
        "bad-redis.toml",
        "[revocation]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:notaport/0\"\n",
    );
    for args in [&["check-config", "--config"][..], &["--config"][..]] {
        let out = revgate().args(args).arg(&path).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("revocation.redis_url").count(), 1, "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// `revgate revoke` talks to a running gateway's admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_subcommand_uses_the_admin_api() {
    use crate::support::*;
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&auth_config(&up.url(), "")).await;
    let cfg_path = write_config("revoke-cli.toml", &auth_config(&up.url(), ""));
    let admin_url = gw.admin_url("");
    let jti = unique("cli");
    let t = hs256(&claims("pat", &jti, "orders:read"));
    let run = |args: Vec<String>| {
        let cfg_path = cfg_path.clone();
        let admin_url = admin_url.clone();
        tokio::task::spawn_blocking(move || {
            revgate()
                .arg("revoke")
                .args(&args)
                .arg("--admin-url")
                .arg(&admin_url)
                .arg("--config")
                .arg(&cfg_path)
                .output()
                .expect("run")
        })
    };
    let out = run(vec!["--jti".into(), jti.clone()]).await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&jti));
    assert_eq!(
        get_with(&gw.url("/api/x"), &t).await.status,
        hyper::StatusCode::UNAUTHORIZED
    );
    let other = token("quinn", "orders:read");
    let out = run(vec!["--sub".into(), "quinn".into()])
        .await
        .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get_with(&gw.url("/api/x"), &other).await.status,
        hyper::StatusCode::UNAUTHORIZED
    );
    // A bad admin token is reported, exit 1.
    let bad_cfg = write_config(
        "revoke-cli-bad.toml",
        &auth_config(&up.url(), "").replace(ADMIN_TOKEN, "wrong-admin-token-0123456789"),
    );
    let out = tokio::task::spawn_blocking(move || {
        revgate()
            .args([
                "revoke",
                "--jti",
                "x",
                "--admin-url",
                &gw.admin_url(""),
                "--config",
            ])
            .arg(&bad_cfg)
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// The repo's gateway.toml reads both secrets from the environment; each
/// subcommand must need only the one it uses (mint: the HMAC secret, not
/// the admin token).
#[test]
fn mint_needs_no_admin_token() {
    let out = revgate()
        .args(["mint", "--sub", "alice", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .env("REVGATE_HMAC_SECRET", "s".repeat(40))
        .env_remove("REVGATE_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches('.').count(), 2);
    // Without the secret it does need, mint is still a config error.
    let out = revgate()
        .args(["mint", "--sub", "alice", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .env_remove("REVGATE_HMAC_SECRET")
        .env("REVGATE_ADMIN_TOKEN", "t".repeat(40))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jwt.hmac_secret_env"));
}

/// `revgate revoke` reads the admin token, never the HMAC secret: it gets
/// past the config (here to a connection error, exit 1, not 2).
#[test]
fn revoke_needs_no_hmac_secret() {
    let out = revgate()
        .args([
            "revoke",
            "--jti",
            "j1",
            "--admin-url",
            "http://127.0.0.1:1",
            "--config",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .env_remove("REVGATE_HMAC_SECRET")
        .env("REVGATE_ADMIN_TOKEN", "t".repeat(40))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("config error"), "{err}");
    let out = revgate()
        .args(["revoke", "--jti", "j1", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .env("REVGATE_HMAC_SECRET", "s".repeat(40))
        .env_remove("REVGATE_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.token_env"));
}

/// `--version` names the commit; `completions` prints a script without
/// reading any config (none exists at this path).
#[test]
fn version_and_completions() {
    let out = revgate().arg("--version").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(concat!("revgate ", env!("CARGO_PKG_VERSION"), " (commit ")),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = revgate()
            .args(["completions", shell, "--config", "/nonexistent.toml"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("revgate") && script.contains("check-config"),
            "{shell}: {script}"
        );
    }
}

/// Pins a fixed bug: SIGHUP killed the gateway (exit 129). It now reloads
/// the config file, and the process keeps serving.
#[test]
fn sighup_reloads_instead_of_killing() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    let (port, admin) = (free(), free());
    let path = write_config(
        "sighup.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"2s\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n[access_log]\nenabled = false\n"
        ),
    );
    let mut child = revgate().arg("--config").arg(&path).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not start listening"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let metrics = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !metrics().contains("revgate_config_reloads_total{result=\"success\"} 1") {
        assert!(
            std::time::Instant::now() < deadline,
            "no successful reload counted: {}",
            metrics()
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "SIGHUP ended the process"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}
