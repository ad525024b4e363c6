//! Records the git commit the binary was built from, for `revgate --version`
//! and the `revgate_build_info` metric. Outside a git checkout (a crate
//! tarball) the commit is "unknown"; `REVGATE_BUILD_COMMIT` overrides it.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=REVGATE_BUILD_COMMIT");
    // Rebuild when HEAD moves (a commit, a checkout). Asked of git, since
    // in a worktree `.git` is a file pointing elsewhere.
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    for path in ["HEAD", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref().filter(|b| b.starts_with("refs/")))
    {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let commit = std::env::var("REVGATE_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=REVGATE_COMMIT={commit}");
}

/// One line of git's output, or `None` when git is absent or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}
