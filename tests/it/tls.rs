//! TLS on the listeners and to upstreams, with certificates generated here
//! (rcgen) and a client that verifies them (rustls): HTTPS and HTTP/2
//! through an auth route, every key type and a chain, certificates a
//! verifying client must refuse, an https upstream with its own CA, a
//! plain-HTTP client on the TLS port, the certificate swapped by a reload,
//! and a bad certificate at start.

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// Deadline for any one exchange: nothing here may hang.
const DEADLINE: Duration = Duration::from_secs(10);

/// A test RSA key: ring (rcgen's backend here) cannot generate RSA keys.
const RSA_KEY: &str = include_str!("../fixtures/tls/rsa-2048.pem");

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn root(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` with `key`; `expired`: valid only
    /// in 2000.
    fn leaf_with(&self, names: &[&str], key: KeyPair, expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, "test");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// An ECDSA P-256 certificate for localhost and 127.0.0.1.
    fn leaf(&self) -> Leaf {
        self.leaf_with(
            &["localhost", "127.0.0.1"],
            KeyPair::generate().expect("key"),
            false,
        )
    }
}

/// Writes `leaf` (with `chain` after it) as cert.pem and key.pem in `dir`.
fn write_leaf(dir: &Path, leaf: &Leaf, chain: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, format!("{}{chain}", leaf.cert_pem)).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    (cert, key)
}

fn tls_section(section: &str, cert: &Path, key: &Path) -> String {
    format!(
        "[{section}.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// An open gateway (`auth = "none"` on `/`) over TLS.
async fn open_gateway(upstream: &str, cert: &Path, key: &Path) -> Gateway {
    Gateway::start(&format!(
        "{}\n[[route]]\nprefix = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n",
        tls_section("server", cert, key)
    ))
    .await
}

fn client_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A verifying TLS client's handshake with `addr` as `name`.
async fn connect(
    addr: SocketAddr,
    name: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(roots, alpn)));
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    tokio::time::timeout(DEADLINE, async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(name, tcp).await
    })
    .await
    .expect("handshake within the deadline")
}

/// The leaf certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .expect("a certificate")
}

/// One GET over an established TLS connection, HTTP/2 if ALPN chose it.
async fn get_over(
    stream: TlsStream<TcpStream>,
    path: &str,
    headers: &[(&str, &str)],
) -> (Version, Got) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut b = Request::builder().method("GET");
    b = if h2 {
        b.uri(format!("https://localhost{path}"))
    } else {
        b.uri(path).header("host", "localhost")
    };
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).expect("request");
    let io = TokioIo::new(stream);
    let resp = tokio::time::timeout(DEADLINE, async move {
        if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http1 handshake");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        }
    })
    .await
    .expect("response within the deadline");
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let got = Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    (version, got)
}

#[tokio::test]
async fn https_and_http2_through_an_auth_route() {
    let up = Upstream::echo("up").await;
    let ca = Ca::root("test CA");
    let leaf = ca.leaf();
    let admin_leaf = ca.leaf();
    let dir = temp_dir("tls-auth");
    let (cert, key) = write_leaf(&dir, &leaf, "");
    let admin_dir = dir.join("admin");
    std::fs::create_dir_all(&admin_dir).expect("dir");
    let (admin_cert, admin_key) = write_leaf(&admin_dir, &admin_leaf, "");
    let toml = format!(
        "{}\n{}{}",
        tls_section("server", &cert, &key),
        auth_config(&up.url(), ""),
        tls_section("admin", &admin_cert, &admin_key),
    );
    let gw = Gateway::start(&toml).await;
    let roots = [ca.der.clone()];
    let t = token("alice", "orders:read");
    let auth = format!("Bearer {t}");

    for (alpn, version) in [
        (&b"h2"[..], Version::HTTP_2),
        (&b"http/1.1"[..], Version::HTTP_11),
    ] {
        let stream = connect(gw.addr, "localhost", &roots, &[alpn])
            .await
            .expect("handshake");
        assert_eq!(presented(&stream), leaf.der);
        let (v, got) = get_over(stream, "/api/orders", &[("authorization", &auth)]).await;
        assert_eq!(v, version);
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        let seen = up.last();
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.headers["x-auth-subject"], "alice");

        let stream = connect(gw.addr, "localhost", &roots, &[alpn])
            .await
            .expect("handshake");
        let (_, got) = get_over(stream, "/api/orders", &[]).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED);
        assert!(got.header("www-authenticate").starts_with("Bearer"));
    }

    // The admin listener has a certificate of its own.
    let admin = gw.admin.expect("admin listener");
    let stream = connect(admin, "localhost", &roots, &[b"http/1.1"])
        .await
        .expect("admin handshake");
    assert_eq!(presented(&stream), admin_leaf.der);
    let (_, got) = get_over(stream, "/healthz", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
}

/// RSA (PKCS#8), ECDSA P-256 and P-384, Ed25519 leaves, and a leaf served
/// with its intermediate to a client that trusts only the root.
#[tokio::test]
async fn every_key_type_and_a_chain_are_served() {
    let up = Upstream::echo("up").await;
    let root = Ca::root("root CA");
    let names = ["localhost", "127.0.0.1"];
    let rsa = KeyPair::from_pem(RSA_KEY).expect("rsa key");
    let cases = [
        ("rsa", rsa),
        (
            "ecdsa-p256",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"),
        ),
        (
            "ecdsa-p384",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key"),
        ),
        (
            "ed25519",
            KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key"),
        ),
    ];
    for (kind, key) in cases {
        let leaf = root.leaf_with(&names, key, false);
        let dir = temp_dir(&format!("tls-{kind}"));
        let (cert, key) = write_leaf(&dir, &leaf, "");
        let gw = open_gateway(&up.url(), &cert, &key).await;
        let stream = connect(
            gw.addr,
            "localhost",
            std::slice::from_ref(&root.der),
            &[b"h2"],
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: handshake: {e}"));
        assert_eq!(presented(&stream), leaf.der, "{kind}");
        let (_, got) = get_over(stream, "/x", &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{kind}");
    }

    let intermediate = root.intermediate("intermediate CA");
    let leaf = intermediate.leaf();
    let dir = temp_dir("tls-chain");
    let (cert, key) = write_leaf(&dir, &leaf, &intermediate.pem);
    let gw = open_gateway(&up.url(), &cert, &key).await;
    let stream = connect(
        gw.addr,
        "localhost",
        std::slice::from_ref(&root.der),
        &[b"http/1.1"],
    )
    .await
    .expect("the chain verifies up to the root");
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("chain")
        .to_vec();
    assert_eq!(chain, vec![leaf.der.clone(), intermediate.der.clone()]);
    let (_, got) = get_over(stream, "/x", &[]).await;
    assert_eq!(got.status, StatusCode::OK);

    // Without its intermediate, the leaf does not verify.
    let dir = temp_dir("tls-no-chain");
    let (cert, key) = write_leaf(&dir, &leaf, "");
    let gw = open_gateway(&up.url(), &cert, &key).await;
    let err = connect(
        gw.addr,
        "localhost",
        std::slice::from_ref(&root.der),
        &[b"http/1.1"],
    )
    .await
    .expect_err("no path to the root");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn expired_and_wrong_host_certificates_are_refused_by_a_verifying_client() {
    let up = Upstream::echo("up").await;
    let ca = Ca::root("test CA");
    let roots = [ca.der.clone()];
    let cases = [
        (
            "expired",
            ca.leaf_with(&["localhost"], KeyPair::generate().expect("key"), true),
            "certificate expired",
        ),
        (
            "wrong-host",
            ca.leaf_with(&["other.example"], KeyPair::generate().expect("key"), false),
            "not valid for name",
        ),
    ];
    for (kind, leaf, reason) in cases {
        let dir = temp_dir(&format!("tls-{kind}"));
        let (cert, key) = write_leaf(&dir, &leaf, "");
        let gw = open_gateway(&up.url(), &cert, &key).await;
        let err = connect(gw.addr, "localhost", &roots, &[b"h2"])
            .await
            .expect_err(kind);
        assert!(err.to_string().contains(reason), "{kind}: {err}");
    }
    assert_eq!(up.count(), 0, "nothing was forwarded");
}

/// An https upstream on 127.0.0.1:0 serving `leaf`, answering "ok over
/// tls"; counts the TLS connections it completed.
async fn tls_upstream(leaf: &Leaf) -> (SocketAddr, Arc<AtomicUsize>) {
    let chain = vec![leaf.der.clone()];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key pem");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let proto = req
                            .headers()
                            .get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        Ok::<_, std::convert::Infallible>(Response::new(full(format!(
                            "ok over tls, proto={proto}"
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, handshakes)
}

#[tokio::test]
async fn https_upstream_with_its_own_ca() {
    let ca = Ca::root("upstream CA");
    let (addr, handshakes) = tls_upstream(&ca.leaf()).await;
    let dir = temp_dir("tls-upstream");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write ca");
    let upstream = format!("https://localhost:{}", addr.port());
    let gw = Gateway::start(&format!(
        "[[route]]\nprefix = \"/private-ca/\"\nupstream = \"{upstream}\"\nauth = \"none\"\nca_file = {:?}\n\n[[route]]\nprefix = \"/system-roots/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n",
        ca_file.display().to_string()
    ))
    .await;

    for _ in 0..3 {
        let got = get(&gw.url("/private-ca/x"), &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(got.body, "ok over tls, proto=http");
    }
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "one pooled connection carried the three requests"
    );

    // The upstream's CA is not among the webpki roots: refused, 502.
    let got = get(&gw.url("/system-roots/x"), &[]).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);

    // A name the certificate does not carry: refused too.
    let gw = Gateway::start(&format!(
        "[[route]]\nprefix = \"/\"\nupstream = \"https://127.0.0.2:{}\"\nauth = \"none\"\nca_file = {:?}\n",
        addr.port(),
        ca_file.display().to_string()
    ))
    .await;
    let got = get(&gw.url("/x"), &[]).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_answered_as_a_tls_server_would() {
    let up = Upstream::echo("up").await;
    let ca = Ca::root("test CA");
    let dir = temp_dir("tls-plain");
    let (cert, key) = write_leaf(&dir, &ca.leaf(), "");
    let gw = open_gateway(&up.url(), &cert, &key).await;
    let mut tcp = TcpStream::connect(gw.addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer))
        .await
        .expect("the connection is closed, not left hanging")
        .ok();
    // A TLS alert record (content type 21), then the close.
    assert_eq!(answer.first(), Some(&0x15), "{answer:?}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_client_that_never_starts_the_handshake_is_closed_after_header_read_timeout() {
    let up = Upstream::echo("up").await;
    let ca = Ca::root("test CA");
    let dir = temp_dir("tls-silent");
    let (cert, key) = write_leaf(&dir, &ca.leaf(), "");
    let gw = Gateway::start(&format!(
        "[server]\nheader_read_timeout = \"300ms\"\n{}\n[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
        tls_section("server", &cert, &key),
        up.url()
    ))
    .await;
    let mut tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
        .await
        .expect("closed by the gateway within the deadline");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
    let up = Upstream::echo("up").await;
    let ca = Ca::root("test CA");
    let roots = [ca.der.clone()];
    let (first, second) = (ca.leaf(), ca.leaf());
    let dir = temp_dir("tls-reload");
    let (cert, key) = write_leaf(&dir, &first, "");
    let (gw, path) = Gateway::start_reloadable(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
        tls_section("server", &cert, &key),
        up.url()
    ))
    .await;
    let stream = connect(gw.addr, "localhost", &roots, &[b"h2"])
        .await
        .expect("handshake");
    assert_eq!(presented(&stream), first.der);

    write_leaf(&dir, &second, "");
    let got = admin(&gw, "POST", "/admin/reload", "").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let stream = connect(gw.addr, "localhost", &roots, &[b"h2"])
        .await
        .expect("handshake");
    assert_eq!(presented(&stream), second.der, "the new certificate");
    let (_, got) = get_over(stream, "/x", &[]).await;
    assert_eq!(got.status, StatusCode::OK);

    std::fs::write(&cert, "not a certificate\n").expect("write");
    let got = admin(&gw, "POST", "/admin/reload", "").await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert_eq!(got.json()["key"], "server.tls.cert_file", "{}", got.body);
    let stream = connect(gw.addr, "localhost", &roots, &[b"h2"])
        .await
        .expect("handshake");
    assert_eq!(presented(&stream), second.der, "the old one stays");

    // TLS on or off is the accept loop's: a restart.
    write_config_file(
        &path,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
            up.url()
        ),
    );
    let got = admin(&gw, "POST", "/admin/reload", "").await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert_eq!(got.json()["key"], "server.tls", "{}", got.body);
    assert!(got.body.contains("restart"), "{}", got.body);
}

#[test]
fn a_bad_certificate_at_start_exits_2_naming_the_file() {
    let ca = Ca::root("test CA");
    let dir = temp_dir("tls-bad-start");
    let (cert, key) = write_leaf(&dir, &ca.leaf(), "");
    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let other_key = dir.join("other-key.pem");
    std::fs::write(
        &other_key,
        KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    let missing = dir.join("missing.pem");
    let cases = [
        (&missing, &key, "server.tls.cert_file"),
        (&garbage, &key, "server.tls.cert_file"),
        (&cert, &missing, "server.tls.key_file"),
        (&cert, &other_key, "server.tls.key_file"),
    ];
    for (i, (cert, key, named)) in cases.iter().enumerate() {
        let config = dir.join(format!("gateway-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n",
                tls_section("server", cert, key)
            ),
        )
        .expect("write config");
        for args in [&["check-config"][..], &[][..]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_revgate"))
                .args(args)
                .arg("--config")
                .arg(&config)
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {named}: {err}");
            let file = if named.ends_with("cert_file") {
                cert
            } else {
                key
            };
            assert!(
                err.contains(named) && err.contains(&file.display().to_string()),
                "{args:?}: {err}"
            );
        }
    }
}
