//! `docs/reference.md` is checked against the code: the configuration keys
//! against `gateway.toml`, the metrics against what a running gateway
//! exports, both ways.

use crate::support::*;
use std::collections::BTreeSet;

const REFERENCE: &str = include_str!("../../docs/reference.md");
const EXAMPLE: &str = include_str!("../../gateway.toml");

/// Every `section.key` named in the first column of the reference's key
/// tables (rows under "## Configuration keys").
fn reference_keys() -> BTreeSet<String> {
    let start = REFERENCE
        .find("## Configuration keys")
        .expect("a Configuration keys section");
    let end = REFERENCE[start + 1..]
        .find("\n## ")
        .map_or(REFERENCE.len(), |e| start + 1 + e);
    let mut keys = BTreeSet::new();
    for line in REFERENCE[start..end].lines() {
        let Some(first) = line.strip_prefix("| ").and_then(|l| l.split(" |").next()) else {
            continue;
        };
        for cell in first.split(", ") {
            let key = cell.trim_matches('`');
            if key.contains('.') && !key.contains(' ') {
                keys.insert(key.to_owned());
            }
        }
    }
    keys
}

/// Every key `gateway.toml` sets, as `section.key` (`route.key` for the
/// `[[route]]` tables; inline tables count as one key).
fn example_keys() -> BTreeSet<String> {
    let value: toml::Table = EXAMPLE.parse().expect("gateway.toml parses");
    let mut keys = BTreeSet::new();
    for (section, v) in &value {
        let tables: Vec<&toml::Table> = match v {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(a) => a.iter().filter_map(toml::Value::as_table).collect(),
            _ => continue,
        };
        for t in tables {
            for key in t.keys() {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    keys
}

/// The text of `gateway.toml` under `[section]` or `[[section]]` headers,
/// comments included (where keys that are off by default are shown).
fn example_section(section: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in EXAMPLE.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("");
            inside = name == section;
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_key_of_gateway_toml_is_in_the_reference() {
    let documented = reference_keys();
    let missing: Vec<_> = example_keys().difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "in gateway.toml, not in docs/reference.md: {missing:?}"
    );
}

#[test]
fn every_key_of_the_reference_is_shown_in_gateway_toml() {
    let mut missing = Vec::new();
    for key in reference_keys() {
        // `server.tls.cert_file` is shown under `[server]`, commented out.
        let (section, rest) = key.split_once('.').expect("dotted");
        let name = rest.rsplit('.').next().unwrap_or(rest);
        let text = example_section(section);
        let shown = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == name);
        if !shown {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "in docs/reference.md, not in gateway.toml (even commented): {missing:?}"
    );
}

/// The metrics page of a gateway with a durable store, an access log file
/// and one request served.
async fn exported_metrics() -> String {
    let up = Upstream::echo("up").await;
    let dir = temp_dir("reference-metrics");
    let gw = Gateway::start(&auth_config(
        &up.url(),
        &format!(
            "path = {:?}\n[access_log]\npath = {:?}\n",
            dir.join("store").display().to_string(),
            dir.join("access.log").display().to_string()
        ),
    ))
    .await;
    let t = token("metrics-reference", "orders:read");
    get_with(&gw.url("/api/x"), &t).await;
    get(&gw.admin_url("/metrics"), &[]).await.body
}

/// Every metric family a gateway with every feature on exports is in the
/// reference's metrics table.
#[tokio::test]
async fn every_exported_metric_is_in_the_reference() {
    let body = exported_metrics().await;
    let mut missing = BTreeSet::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| body.contains(&format!("# TYPE {f} histogram")))
            })
            .unwrap_or(name);
        if !REFERENCE.contains(&format!("`{family}`")) {
            missing.insert(family.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "exported, not in docs/reference.md: {missing:?}"
    );
}

/// Metrics of the reference's table that the gateway above does not
/// export, and why.
const NOT_EXPORTED_HERE: &[(&str, &str)] = &[];

/// The first column of the reference's metrics table (under "## Metrics").
fn reference_metrics() -> BTreeSet<&'static str> {
    let start = REFERENCE.find("## Metrics").expect("a Metrics section");
    let end = REFERENCE[start + 1..]
        .find("\n## ")
        .map_or(REFERENCE.len(), |e| start + 1 + e);
    REFERENCE[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect()
}

/// The reverse: every metric of the reference's table is exported (a
/// `# TYPE` line) by the gateway above, or listed in [`NOT_EXPORTED_HERE`]
/// with the reason; and that list holds only metrics of the table that
/// are in fact not exported.
#[tokio::test]
async fn every_metric_of_the_reference_is_exported() {
    let body = exported_metrics().await;
    let exported: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let documented = reference_metrics();
    assert!(documented.len() > 20, "{documented:?}");
    let excused = |name: &str| NOT_EXPORTED_HERE.iter().any(|(n, _)| *n == name);
    let missing: Vec<_> = documented
        .iter()
        .filter(|m| !exported.contains(*m) && !excused(m))
        .collect();
    assert!(
        missing.is_empty(),
        "in docs/reference.md, not exported: {missing:?}"
    );
    let stale: Vec<_> = NOT_EXPORTED_HERE
        .iter()
        .filter(|(n, _)| exported.contains(n) || !documented.contains(n))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_EXPORTED_HERE names exported or undocumented metrics: {stale:?}"
    );
}
