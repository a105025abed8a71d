//! OpenAI's duration format for `x-ratelimit-reset-*` and "Please try again in ...".

use std::fmt::Write;
use std::time::Duration;

/// A duration as OpenAI writes its rate-limit resets (Go's `time.Duration` format at
/// millisecond precision, rounded up): `0s`, `20ms`, `1.5s`, `59.999s`, `6m0s`, `1h2m3s`.
pub fn duration(d: Duration) -> String {
    let mut ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let hours = ms / 3_600_000;
    ms %= 3_600_000;
    let minutes = ms / 60_000;
    ms %= 60_000;
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let (secs, millis) = (ms / 1_000, ms % 1_000);
    if millis == 0 {
        let _ = write!(out, "{secs}s");
    } else {
        let frac = format!("{millis:03}");
        let _ = write!(out, "{secs}.{}s", frac.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_openai_writes_them() {
        let ms = Duration::from_millis;
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_micros(1)), "1ms");
        assert_eq!(duration(ms(20)), "20ms");
        assert_eq!(duration(ms(999)), "999ms");
        assert_eq!(duration(ms(1_000)), "1s");
        assert_eq!(duration(ms(1_500)), "1.5s");
        assert_eq!(duration(ms(9_816)), "9.816s");
        assert_eq!(duration(ms(59_999)), "59.999s");
        assert_eq!(duration(ms(360_000)), "6m0s");
        assert_eq!(duration(ms(90_050)), "1m30.05s");
        assert_eq!(duration(ms(3_723_000)), "1h2m3s");
        assert_eq!(duration(ms(3_600_000)), "1h0m0s");
        assert!(duration(Duration::MAX).ends_with('s'));
    }
}
