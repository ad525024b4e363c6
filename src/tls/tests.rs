//! Loading certificates and keys (every key encoding, chains) and the TLS
//! keys of the configuration, with errors that name the file at fault.

use super::*;
use crate::config::Config;
use rcgen::{CertificateParams, KeyPair};
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "revgate-tls-unit-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// A self-signed certificate for `key`, and the files `cert.pem` and
/// `key.pem` (`key_pem` as given, so another encoding of the same key can
/// be tried).
fn files(d: &Path, key: &KeyPair, key_pem: &str) -> (PathBuf, PathBuf) {
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(key)
        .expect("cert");
    let (c, k) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key_pem).expect("write");
    (c, k)
}

#[test]
fn every_key_encoding_loads() {
    let rsa = KeyPair::from_pem(&fixture("rsa-2048.pem")).expect("rsa");
    let ec = KeyPair::from_pem(&fixture("ec-p256.pem")).expect("ec");
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    let cases = [
        ("rsa-pkcs8", &rsa, fixture("rsa-2048.pem")),
        ("rsa-pkcs1", &rsa, fixture("rsa-2048-pkcs1.pem")),
        ("ec-pkcs8", &ec, fixture("ec-p256.pem")),
        ("ec-sec1", &ec, fixture("ec-p256-sec1.pem")),
        ("ed25519", &ed, ed.serialize_pem()),
    ];
    for (name, key, pem) in cases {
        let d = dir(name);
        let (c, k) = files(&d, key, &pem);
        let tls = ListenerTls::load("server", c, k).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tls.chain().len(), 1, "{name}");
    }
}

#[test]
fn errors_name_the_key_and_quote_the_file() {
    let d = dir("errors");
    let key = KeyPair::generate().expect("key");
    let (cert, key_file) = files(&d, &key, &key.serialize_pem());
    let other = d.join("other.pem");
    std::fs::write(&other, KeyPair::generate().expect("key").serialize_pem()).expect("write");
    let empty = d.join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let missing = d.join("missing.pem");
    let cases = [
        (&missing, &key_file, "admin.tls.cert_file", &missing),
        (&empty, &key_file, "admin.tls.cert_file", &empty),
        // A key file is not a certificate file.
        (&key_file, &key_file, "admin.tls.cert_file", &key_file),
        (&cert, &missing, "admin.tls.key_file", &missing),
        (&cert, &cert, "admin.tls.key_file", &cert),
        (&cert, &other, "admin.tls.key_file", &other),
    ];
    for (c, k, named, file) in cases {
        let err = ListenerTls::load("admin", c.clone(), k.clone()).expect_err(named);
        assert_eq!(err.key().as_deref(), Some(named), "{err}");
        assert!(err.to_string().contains(&format!("{file:?}")), "{err}");
    }
}

fn config(d: &Path, extra: &str) -> Result<Config, crate::config::ConfigError> {
    let key = KeyPair::generate().expect("key");
    let (c, k) = files(d, &key, &key.serialize_pem());
    Config::from_toml(
        &format!(
            "[server]\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}",
            c.display().to_string(),
            k.display().to_string()
        ),
        "t",
    )
}

#[test]
fn a_tls_section_needs_both_files_and_no_other_key() {
    let d = dir("section");
    assert!(config(&d, "").expect("valid").server.tls.is_some());
    let err = Config::from_toml("[server.tls]\ncert_file = \"c.pem\"\n", "t").expect_err("no key");
    assert_eq!(err.key().as_deref(), Some("server.tls.key_file"));
    let err = Config::from_toml("[server.tls]\ncert = \"c.pem\"\n", "t").expect_err("unknown");
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = Config::from_toml("[admin.tls]\nkey_file = \"k.pem\"\n", "t").expect_err("no cert");
    assert_eq!(err.key().as_deref(), Some("admin.tls.cert_file"));
}

#[test]
fn https_upstreams_take_a_ca_file_and_http_ones_do_not() {
    let d = dir("upstream");
    let ca = d.join("ca.pem");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(&ca, cert.pem()).expect("write");
    let route = |upstream: &str, ca_file: Option<&Path>| {
        let ca = ca_file.map_or(String::new(), |p| {
            format!("ca_file = {:?}\n", p.display().to_string())
        });
        Config::from_toml(
            &format!("[[route]]\nprefix = \"/\"\nupstream = {upstream:?}\nauth = \"none\"\n{ca}"),
            "t",
        )
    };
    let c = route("https://api.example", None).expect("system roots");
    let tls = c.routes[0].upstream.tls.as_ref().expect("tls");
    assert_eq!(tls.server_name.to_str(), "api.example");
    assert!(tls.ca_file.is_none());
    let c = route("https://10.0.0.1:8443/base", Some(&ca)).expect("own CA");
    let tls = c.routes[0].upstream.tls.as_ref().expect("tls");
    assert_eq!(tls.server_name.to_str(), "10.0.0.1");
    assert_eq!(c.routes[0].upstream.base_path, "/base");

    let err = route("http://127.0.0.1:9000", Some(&ca)).expect_err("http");
    assert_eq!(err.key().as_deref(), Some("route[0].ca_file"));
    let err = route("https://api.example", Some(&d.join("none.pem"))).expect_err("missing");
    assert_eq!(err.key().as_deref(), Some("route[0].ca_file"));
    let err = route("ftp://api.example", None).expect_err("scheme");
    assert_eq!(err.key().as_deref(), Some("route[0].upstream"));
}
