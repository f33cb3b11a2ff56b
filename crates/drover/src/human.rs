//! Sizes and moments as people read them.

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(b: u64) -> String {
    match b {
        0..=1023 => format!("{b} B"),
        1024..=1_048_575 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

/// A Unix time in ms as `2026-12-05 00:31:07 UTC` (an agent's deadline is
/// the host's clock: UTC names it the same on every machine).
pub fn utc(ms: u64) -> String {
    let t = Civil::of(i64::try_from(ms).unwrap_or(i64::MAX));
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// A Unix time in ms as `2026-11-22T19:10:00.123Z` (RFC 3339, for logs).
pub fn iso(ms: u64) -> String {
    let t = Civil::of(i64::try_from(ms).unwrap_or(i64::MAX));
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis)
}

/// A UTC calendar date and time. Written here rather than pulling in a
/// date crate for three formatters: UTC needs no time zone database, and
/// the conversion is Howard Hinnant's days-to-civil algorithm.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
}

impl Civil {
    fn of(ms: i64) -> Civil {
        let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let secs = in_day / 1000;
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day: doy - (153 * mp + 2) / 5 + 1,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            millis: in_day % 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_names_the_civil_date_and_time() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000 + 3_661_000), "2000-02-29 01:01:01 UTC");
        assert_eq!(super::utc(1_796_430_667_000), "2026-12-05 00:31:07 UTC");
    }

    #[test]
    fn iso_formats_utc_with_milliseconds() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso(1_795_374_600_123), "2026-11-22T19:10:00.123Z");
    }
}
