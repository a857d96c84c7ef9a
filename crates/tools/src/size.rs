//! Sizes on the command line (`1M`, `64k`) and sizes in human units for `lfs df -h`.

use sheen_wire::limits::{STRIPE_SIZE_MAX_BYTES, STRIPE_SIZE_MIN_BYTES};

/// Parses a byte count with an optional binary suffix: `k`/`K`, `m`/`M`, `g`/`G`, `t`/`T`
/// (an optional trailing `B` or `iB` is accepted too, so `1MiB` and `1MB` mean 1 MiB, as in
/// Lustre's `llapi_parse_size`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "bad size '{text}': expected a number with optional k, M, G or T"
        ));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("bad size '{text}': too large"))?;
    let unit_text = suffix
        .strip_suffix("iB")
        .or_else(|| suffix.strip_suffix('B'));
    let shift = match unit_text.unwrap_or(suffix) {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        _ => return Err(format!("bad size '{text}': unknown unit '{suffix}'")),
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("bad size '{text}': too large"))
}

/// Parses a stripe size for `setstripe -S`: 0 (the default) or a multiple of 64 KiB no
/// larger than Lustre's limit.
pub fn parse_stripe_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size == 0 {
        return Ok(0);
    }
    if size % STRIPE_SIZE_MIN_BYTES != 0 {
        return Err(format!(
            "bad stripe size '{text}': must be a multiple of {STRIPE_SIZE_MIN_BYTES} bytes"
        ));
    }
    if size > STRIPE_SIZE_MAX_BYTES {
        return Err(format!(
            "bad stripe size '{text}': must be at most {STRIPE_SIZE_MAX_BYTES} bytes"
        ));
    }
    Ok(size)
}

/// Base and unit letters for human-readable numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HumanBase {
    /// Powers of 1024, `K M G T P E Z Y` (`lfs df -h`).
    Binary,
    /// Powers of 1000, `k M G T P E Z Y` (`lfs df -H`).
    Decimal,
}

/// Formats `value` as Lustre's `lfs df -h` does: divided while above the base, then printed
/// with one decimal and the unit letter (`%8.1f%c`); values that need no unit are printed
/// as plain integers right-aligned in 11 columns.
pub fn human(value: u64, base: HumanBase) -> String {
    let (divisor, units) = match base {
        HumanBase::Binary => (1024.0, ['K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y']),
        HumanBase::Decimal => (1000.0, ['k', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y']),
    };
    // Display only: an f64 holds every u64 closely enough for one decimal place.
    let mut cooked = value as f64;
    let mut radix = 0usize;
    while cooked > divisor && radix < units.len() {
        cooked /= divisor;
        radix += 1;
    }
    match radix.checked_sub(1).and_then(|i| units.get(i)) {
        Some(unit) => format!("{cooked:8.1}{unit}"),
        None => format!("{value:11}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        let cases = [
            ("0", 0),
            ("4096", 4096),
            ("64k", 65536),
            ("64K", 65536),
            ("1m", 1 << 20),
            ("1M", 1 << 20),
            ("1MiB", 1 << 20),
            ("4MB", 4 << 20),
            ("2g", 2 << 30),
            ("1T", 1 << 40),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "M",
            "1X",
            "1.5M",
            "-1",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stripe_size_rules() {
        assert_eq!(parse_stripe_size("1M"), Ok(1 << 20));
        assert_eq!(parse_stripe_size("64k"), Ok(65536));
        assert_eq!(parse_stripe_size("0"), Ok(0));
        let err = parse_stripe_size("100k").unwrap_err();
        assert_eq!(
            err,
            "bad stripe size '100k': must be a multiple of 65536 bytes"
        );
        assert!(parse_stripe_size("4G").is_err());
        assert_eq!(parse_stripe_size("4194240k"), Ok(STRIPE_SIZE_MAX_BYTES));
    }

    #[test]
    fn human_units_like_lustre() {
        assert_eq!(human(1000, HumanBase::Binary), "       1000");
        assert_eq!(human(1024, HumanBase::Binary), "       1024");
        assert_eq!(human(1025, HumanBase::Binary), "     1.0K");
        assert_eq!(human(855_468_032, HumanBase::Binary), "   815.8M");
        assert_eq!(human(3 << 30, HumanBase::Binary), "     3.0G");
        assert_eq!(human(17_592_186_044_416, HumanBase::Binary), "    16.0T");
        assert_eq!(human(1_500_000, HumanBase::Decimal), "     1.5M");
        assert_eq!(human(0, HumanBase::Binary), "          0");
    }
}
