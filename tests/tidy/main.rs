//! Tidy checks that run under `cargo test`: project rules turned into failing tests.
//!
//! Every Rust file opens with `//!`; no line is longer than 100 columns; no `dbg!`, `todo!`,
//! `unimplemented!`, and no `ignore` or `should_panic` test attributes; and the crate
//! dependency rules of docs/ARCHITECTURE.md hold, read from `cargo metadata`.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where third-party crates patched for Sheen live, kept as their authors wrote them.
const VENDOR_DIR: &str = "vendor";

/// The Rust files git knows about (so build output and scratch files are not checked),
/// outside [`VENDOR_DIR`].
fn rust_files() -> Vec<PathBuf> {
    let root = repo_root();
    let out = Command::new("git")
        .arg("ls-files")
        .arg("*.rs")
        .current_dir(&root)
        .output();
    let files: Vec<PathBuf> = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| root.join(l))
            .filter(|p| p.exists())
            .collect(),
        // Not a git checkout (a source tarball): walk the tree instead.
        _ => walk(&root),
    };
    let vendor = root.join(VENDOR_DIR);
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| !p.starts_with(&vendor))
        .collect();
    assert!(
        !files.is_empty(),
        "no Rust files found under {}",
        root.display()
    );
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_file_has_a_module_doc_and_no_banned_text() {
    let banned = [
        concat!("dbg", "!("),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("#[", "ignore]"),
        concat!("#[", "should_panic"),
    ];
    let mut problems = Vec::new();
    for f in rust_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(repo_root()).unwrap().display().to_string();
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: does not open with a //! module doc"));
        }
        for (i, line) in text.lines().enumerate() {
            if line.chars().count() > 100 {
                problems.push(format!("{rel}:{}: longer than 100 columns", i + 1));
            }
            for b in banned {
                if line.contains(b) {
                    problems.push(format!("{rel}:{}: contains {b}", i + 1));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "tidy problems:\n{}",
        problems.join("\n")
    );
}

/// Which of our crates each crate may depend on (normal dependencies), from
/// docs/ARCHITECTURE.md.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    let mut m: BTreeMap<&str, &[&str]> = BTreeMap::new();
    m.insert("sheen-wire", &[]);
    m.insert("sheen-layout", &["sheen-wire"]);
    m.insert("sheen-transport", &["sheen-wire"]);
    m.insert("sheen-rpc", &["sheen-wire", "sheen-transport"]);
    m.insert("sheen-osd", &["sheen-wire"]);
    m.insert("sheen-dlm", &["sheen-wire"]);
    m.insert(
        "sheen-lock-server",
        &["sheen-wire", "sheen-rpc", "sheen-dlm"],
    );
    m.insert("sheen-namespace", &["sheen-wire", "sheen-layout"]);
    m.insert(
        "sheen-client",
        &[
            "sheen-wire",
            "sheen-layout",
            "sheen-transport",
            "sheen-rpc",
            "sheen-dlm",
        ],
    );
    m.insert("sheen-daemon", &[]);
    m.insert("sheen-cluster", &[]);
    m.insert(
        "sheen-mgs",
        &["sheen-wire", "sheen-transport", "sheen-rpc", "sheen-daemon"],
    );
    m.insert(
        "sheen-mds",
        &[
            "sheen-wire",
            "sheen-layout",
            "sheen-transport",
            "sheen-rpc",
            "sheen-namespace",
            "sheen-daemon",
            "sheen-dlm",
            "sheen-lock-server",
        ],
    );
    m.insert(
        "sheen-oss",
        &[
            "sheen-wire",
            "sheen-transport",
            "sheen-rpc",
            "sheen-osd",
            "sheen-daemon",
            "sheen-dlm",
            "sheen-lock-server",
        ],
    );
    m.insert(
        "sheen-client-fuse",
        &["sheen-client", "sheen-wire", "sheen-layout"],
    );
    m.insert(
        "sheen-tools",
        &["sheen-client", "sheen-wire", "sheen-layout"],
    );
    m.insert("xtask", &["sheen-cluster"]);
    m
}

/// External crates only some packages may use.
fn restricted() -> BTreeMap<&'static str, &'static [&'static str]> {
    let mut m: BTreeMap<&str, &[&str]> = BTreeMap::new();
    m.insert("fuser", &["sheen-client-fuse"]);
    m.insert("sled", &["sheen-namespace", "sheen-mgs"]);
    m.insert("io-uring", &["sheen-osd"]);
    m
}

#[test]
fn crate_dependency_rules_hold() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed = allowed();
    let restricted = restricted();
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        let only_lib = pkg["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "lib"));
        let deps: BTreeSet<&str> = pkg["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        if let Some(ok) = allowed.get(name) {
            for d in deps.iter().filter(|d| d.starts_with("sheen-")) {
                if !ok.contains(d) {
                    problems.push(format!("{name} must not depend on {d}"));
                }
            }
        }
        for (ext, users) in &restricted {
            if deps.contains(ext) && !users.contains(&name) {
                problems.push(format!("{name} must not use {ext} (only {users:?})"));
            }
        }
        if only_lib && deps.contains("anyhow") {
            problems.push(format!("library {name} must not use anyhow"));
        }
    }
    assert!(
        problems.is_empty(),
        "dependency rules broken:\n{}",
        problems.join("\n")
    );
}
