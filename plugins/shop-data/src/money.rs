//! Amounts are integer cents everywhere; these convert at the JSON boundary.

/// Cents as a JSON number, e.g. `1049` → `10.49`. JSON cannot carry trailing zeros, so `750`
/// becomes `7.5`; the nearest `f64` prints as the exact decimal.
pub fn to_number(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// Cents as text with two decimals, e.g. `750` → `"7.50"`.
pub fn to_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses a non-negative decimal amount with at most two decimals (`"21"`, `"21.4"`,
/// `"21.45"`) into cents.
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, frac) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || frac.len() > 2 || !digits(frac) {
        return None;
    }
    let frac_cents: i64 = format!("{frac:0<2}").parse().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(frac_cents)
}

/// Converts a JSON number into cents, rounding to the nearest cent.
pub fn from_number(value: f64) -> Option<i64> {
    let cents = (value * 100.0).round();
    (value.is_finite() && value >= 0.0 && cents < i64::MAX as f64).then_some(cents as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cents() {
        assert_eq!(to_text(1049), "10.49");
        assert_eq!(to_text(750), "7.50");
        assert_eq!(to_text(5), "0.05");
        assert_eq!(to_text(-250), "-2.50");
        assert_eq!(to_number(1049), 10.49);
        assert_eq!(to_number(-899).to_string(), "-8.99");
    }

    #[test]
    fn parses_amounts() {
        assert_eq!(parse("21.45"), Some(2145));
        assert_eq!(parse("21.4"), Some(2140));
        assert_eq!(parse(" 21 "), Some(2100));
        assert_eq!(parse("0.05"), Some(5));
        for bad in [
            "",
            ".5",
            "1.234",
            "-1",
            "1e3",
            "abc",
            "1.",
            "99999999999999999999",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(from_number(232.23), Some(23223));
        assert_eq!(from_number(-1.0), None);
        assert_eq!(from_number(f64::NAN), None);
    }
}
