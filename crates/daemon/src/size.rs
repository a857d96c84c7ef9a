//! Human-readable byte sizes with binary units, for flags such as `--ost-size 1GiB`.
//!
//! Every unit is a power of 1024 (Lustre's `lfs setstripe -S 1M` means 1 MiB too), so `64K`,
//! `64KB`, `64KiB` and `65536` are the same size.

use crate::DaemonError;

/// Parses a size in bytes: a decimal integer optionally followed by a binary unit.
///
/// Accepted units (case-insensitive, an optional space before them): `B`, `K`/`KB`/`KiB`,
/// `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB`, `P`/`PB`/`PiB`. Usable directly as a clap
/// `value_parser`.
pub fn parse_size(s: &str) -> Result<u64, DaemonError> {
    let invalid = |reason| DaemonError::InvalidSize {
        input: s.to_owned(),
        reason,
    };
    let text = s.trim();
    let digits_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_len);
    if digits.is_empty() {
        return Err(invalid(
            "expected a whole number of bytes, optionally with a unit",
        ));
    }
    let number: u64 = digits.parse().map_err(|_| invalid("number too large"))?;
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => {
            return Err(invalid(
                "unknown unit (use K, M, G, T or P, optionally with iB)",
            ))
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| invalid("size does not fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<u64>) {
        let actual = parse_size(input).ok();
        assert_eq!(actual, expected, "parse_size({input:?})");
    }

    #[test]
    fn plain_bytes() {
        check("0", Some(0));
        check("4096", Some(4096));
        check("4096B", Some(4096));
        check(" 4096 ", Some(4096));
        check("18446744073709551615", Some(u64::MAX));
    }

    #[test]
    fn binary_units() {
        check("64K", Some(64 << 10));
        check("64k", Some(64 << 10));
        check("64KB", Some(64 << 10));
        check("64KiB", Some(64 << 10));
        check("64 KiB", Some(64 << 10));
        check("1M", Some(1 << 20));
        check("1MiB", Some(1 << 20));
        check("1mib", Some(1 << 20));
        check("16G", Some(16 << 30));
        check("1GiB", Some(1 << 30));
        check("2T", Some(2 << 40));
        check("1PiB", Some(1 << 50));
    }

    #[test]
    fn rejects_bad_input() {
        check("", None);
        check("K", None);
        check("-1", None);
        check("1.5G", None);
        check("12X", None);
        check("1 G B", None);
        check("18446744073709551616", None);
        check("16384P", None);
    }

    #[test]
    fn error_names_the_input() {
        let message = parse_size("12X").unwrap_err().to_string();
        assert!(message.contains("\"12X\""), "{message}");
    }
}
