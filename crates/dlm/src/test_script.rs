//! Test helpers: a tiny notation for locks, so scenario tests read as scripts.
//!
//! A lock is written `MODE RANGE [rN]` for an extent lock (`PW 0-99`, `PR 4096-EOF`,
//! `GROUP:7 0-EOF`), `MODE bits NAME|NAME [rN]` for an inode-bits lock (`PR bits
//! LOOKUP|UPDATE`) or `MODE plain [rN]`; `rN` picks resource N (default 1).

use sheen_wire::{
    ibits, LockDesc, LockExtent, LockHandle, LockMode, LockPolicy, ResourceId, LOCK_EXTENT_EOF,
};

pub fn mode(word: &str) -> (LockMode, u64) {
    let (name, gid) = match word.split_once(':') {
        Some((name, gid)) => (name, gid.parse().unwrap()),
        None => (word, 0),
    };
    let mode = LockMode::ALL
        .into_iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no mode {name}"));
    (mode, gid)
}

fn offset(word: &str) -> u64 {
    if word == "EOF" {
        LOCK_EXTENT_EOF
    } else {
        word.parse().unwrap()
    }
}

fn bit(name: &str) -> u64 {
    match name {
        "LOOKUP" => ibits::LOOKUP,
        "UPDATE" => ibits::UPDATE,
        "OPEN" => ibits::OPEN,
        "LAYOUT" => ibits::LAYOUT,
        "PERM" => ibits::PERM,
        "XATTR" => ibits::XATTR,
        "DOM" => ibits::DOM,
        other => other.parse().unwrap(),
    }
}

/// Parses the notation from `words`.
pub fn desc(words: &[&str]) -> LockDesc {
    let (words, resource) = match words.split_last() {
        Some((last, rest)) if last.starts_with('r') => {
            (rest, ResourceId::object(0, last[1..].parse().unwrap()))
        }
        _ => (words, ResourceId::object(0, 1)),
    };
    let (mode, gid) = mode(words[0]);
    let policy = match words[1] {
        "plain" => LockPolicy::Plain,
        "bits" => LockPolicy::Ibits {
            bits: words[2].split('|').map(bit).fold(0, |a, b| a | b),
        },
        range => {
            let (start, end) = range.split_once('-').unwrap();
            LockPolicy::Extent(LockExtent {
                start: offset(start),
                end: offset(end),
                gid,
            })
        }
    };
    LockDesc {
        resource,
        mode,
        policy,
    }
}

/// Prints a lock in the notation (without the resource when it is the default one).
pub fn show(desc: &LockDesc) -> String {
    let end = |e: u64| {
        if e == LOCK_EXTENT_EOF {
            "EOF".to_owned()
        } else {
            e.to_string()
        }
    };
    let mut out = desc.mode.name().to_owned();
    match desc.policy {
        LockPolicy::Plain => out.push_str(" plain"),
        LockPolicy::Extent(e) => {
            if desc.mode == LockMode::Group {
                out.push_str(&format!(":{}", e.gid));
            }
            out.push_str(&format!(" {}-{}", e.start, end(e.end)));
        }
        LockPolicy::Ibits { bits } => out.push_str(&format!(" bits {bits:#x}")),
    }
    if desc.resource != ResourceId::object(0, 1) {
        out.push_str(&format!(" r{}", desc.resource.name[0]));
    }
    out
}

pub fn handle(word: &str) -> LockHandle {
    LockHandle {
        cookie: word.trim_start_matches('h').parse().unwrap(),
    }
}

pub fn show_handle(h: LockHandle) -> String {
    format!("h{}", h.cookie)
}
