//! Durations written as string literals with a unit (`"500ms"`, `"2s"`, `"1m"`, `"1h"`),
//! parsed when the macro runs so that a bad one is a compile error on that literal.

use std::fmt;

/// A parsed duration, kept in whole milliseconds (the finest unit the attribute accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Millis(pub(crate) u64);

impl Millis {
    pub(crate) fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// The units accepted after the number, with their size in milliseconds.
const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Parses `"<whole number><unit>"`; underscores may group digits (`"1_500ms"`).
///
/// The error is a complete sentence fragment to show on the literal.
pub(crate) fn parse(text: &str) -> Result<Millis, String> {
    let expected = "expected a whole number followed by `ms`, `s`, `m` or `h`, \
                    such as \"500ms\" or \"2s\"";
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let digits: String = number.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        if text.starts_with('-') {
            return Err(format!(
                "invalid duration \"{text}\": a duration cannot be negative"
            ));
        }
        return Err(format!("invalid duration \"{text}\"; {expected}"));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "invalid duration \"{text}\": fractions are not supported; use a smaller unit, \
             such as \"1500ms\" for 1.5s"
        ));
    }
    let Some(&(_, size)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        let hint = if unit.is_empty() {
            "the unit is missing".to_owned()
        } else {
            format!("unknown unit `{}`", unit.trim())
        };
        return Err(format!("invalid duration \"{text}\": {hint}; {expected}"));
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(size))
        .map(Millis)
        .ok_or_else(|| format!("duration \"{text}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_scales_to_milliseconds() {
        assert_eq!(parse("500ms"), Ok(Millis(500)));
        assert_eq!(parse("2s"), Ok(Millis(2_000)));
        assert_eq!(parse("1m"), Ok(Millis(60_000)));
        assert_eq!(parse("1h"), Ok(Millis(3_600_000)));
        assert_eq!(parse("1_500ms"), Ok(Millis(1_500)));
        assert_eq!(parse("0s"), Ok(Millis(0)));
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        let err = |s| parse(s).unwrap_err();
        assert!(err("2").contains("the unit is missing"), "{}", err("2"));
        assert!(
            err("2 sec").contains("unknown unit `sec`"),
            "{}",
            err("2 sec")
        );
        assert!(err("2min").contains("unknown unit `min`"));
        assert!(err("1.5s").contains("fractions are not supported"));
        assert!(err("-1s").contains("cannot be negative"));
        assert!(err("").contains("expected a whole number"));
        assert!(err("ms").contains("expected a whole number"));
        assert!(err("99999999999999999999h").contains("too large"));
        assert!(err("18446744073709551615h").contains("too large"));
    }

    #[test]
    fn display_uses_the_largest_exact_unit() {
        assert_eq!(Millis(1_500).to_string(), "1500ms");
        assert_eq!(Millis(2_000).to_string(), "2s");
        assert_eq!(Millis(120_000).to_string(), "2m");
        assert_eq!(Millis(7_200_000).to_string(), "2h");
        assert_eq!(Millis(0).to_string(), "0ms");
    }
}
