//! The numbers servers write in hint headers: runs of ASCII digits, maybe with a fraction,
//! read saturating.

/// A non-empty run of ASCII digits, read saturating at `u64::MAX`. A sign, a space or any
/// other byte makes it not a number (`str::parse` would take a `+`).
pub(crate) fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, &b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Digits with an optional fraction (`1`, `1.5`, `2.000`), rounded up to the next whole
/// number when the fraction is not zero, saturating at `u64::MAX`. Both sides of a dot
/// must have digits (`1.` and `.5` are not numbers).
pub(crate) fn ceil_decimal(bytes: &[u8]) -> Option<u64> {
    let (whole, fraction) = match bytes.iter().position(|&b| b == b'.') {
        Some(dot) => (&bytes[..dot], Some(&bytes[dot + 1..])),
        None => (bytes, None),
    };
    let whole = digits(whole)?;
    let round_up = match fraction {
        None => false,
        Some(fraction) => {
            digits(fraction)?;
            fraction.iter().any(|&b| b != b'0')
        }
    };
    Some(whole.saturating_add(u64::from(round_up)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_saturate_and_reject_anything_else() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"007"), Some(7));
        assert_eq!(digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(digits(b"18446744073709551616"), Some(u64::MAX));
        for bad in [&b""[..], b"-1", b"+1", b" 1", b"1e3", b"\xff"] {
            assert_eq!(digits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fractions_round_up() {
        assert_eq!(ceil_decimal(b"1"), Some(1));
        assert_eq!(ceil_decimal(b"1.5"), Some(2));
        assert_eq!(ceil_decimal(b"2.000"), Some(2));
        assert_eq!(ceil_decimal(b"0.001"), Some(1));
        assert_eq!(ceil_decimal(b"18446744073709551615.5"), Some(u64::MAX));
        for bad in [&b"1."[..], b".5", b"1.-5", b"1.5.5", b"."] {
            assert_eq!(ceil_decimal(bad), None, "{bad:?}");
        }
    }
}
