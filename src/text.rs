//! Text for people to read: counts, plurals, durations, times, item paths, shortened text. Every layer
//! that writes a number, a time or a long value for a person (the model's messages, the views, the
//! command line, the runtime's notes) takes it from here, so they all read alike. It sits below the
//! model and uses nothing of Braid, so each of them can reach it. Output meant for programs (JSON)
//! never goes through here.

use std::fmt::Write as _;

/// "100,002": a count grouped by thousands, as people read the size of a fan-out (`100002` is easily
/// misread by a factor of ten).
pub fn count(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// "1 invocation", "100,002 invocations": a count with its noun.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{} {noun}s", count(n)),
    }
}

/// A duration given in milliseconds, in the unit that fits: "< 1 µs", "5 µs", "61 ms", "2.10 s",
/// "3 min 5 s". Workers time invocations to the microsecond, so a trivial one reads "< 1 µs", not
/// "0.00 ms".
pub fn duration_ms(ms: f64) -> String {
    if ms < 0.001 {
        "< 1 µs".to_owned()
    } else if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let secs = (ms / 1000.0).round() as u64;
        format!("{} min {} s", secs / 60, secs % 60)
    }
}

/// The time of day (UTC) of a Unix time in milliseconds, "14:05:09", with the date before it when it is
/// not today: "2025-01-31 14:05:09".
pub fn clock_time(unix_ms: f64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    clock_time_seen_at(unix_ms, now_ms)
}

/// [`clock_time`] as seen at `now_ms`.
fn clock_time_seen_at(unix_ms: f64, now_ms: f64) -> String {
    let (days, time) = day_and_time(unix_ms);
    if days == day_and_time(now_ms).0 {
        time
    } else {
        format!("{} {time}", date(days))
    }
}

/// "2025-01-31 14:05:09 UTC": a Unix time in milliseconds, always with its date.
pub fn utc_date_time(unix_ms: f64) -> String {
    let (days, time) = day_and_time(unix_ms);
    format!("{} {time} UTC", date(days))
}

/// The day since 1970-01-01 and the time of day "hh:mm:ss" of a Unix time in milliseconds.
fn day_and_time(unix_ms: f64) -> (i64, String) {
    let secs = (unix_ms / 1000.0).floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let time = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    (days, time)
}

/// "2025-01-31" of a day count since 1970-01-01.
fn date(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The calendar date `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's algorithm),
/// for showing run times without a date-time dependency.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Day 1..=31 and month 1..=12: the casts can't truncate.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// An item's path in its fan-outs, "[3, 7]"; "—" for an invocation outside any fan-out.
pub fn item_path(path: &[u32]) -> String {
    let Some((first, rest)) = path.split_first() else {
        return "—".to_owned();
    };
    let mut text = format!("[{first}");
    for index in rest {
        let _ = write!(text, ", {index}");
    }
    text.push(']');
    text
}

/// `text` shortened to at most `max` characters, the last of them `…` when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.char_indices().nth(max).is_none() {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0u64), "0");
        assert_eq!(count(999u64), "999");
        assert_eq!(count(1000u64), "1,000");
        assert_eq!(count(1_234_567u64), "1,234,567");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(plural(1u64, "invocation"), "1 invocation");
        assert_eq!(plural(0u64, "invocation"), "0 invocations");
        assert_eq!(plural(12u32, "item"), "12 items");
        assert_eq!(plural(100_002u64, "item"), "100,002 items");
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(duration_ms(0.0), "< 1 µs");
        assert_eq!(duration_ms(0.0004), "< 1 µs");
        assert_eq!(duration_ms(0.005), "5 µs");
        assert_eq!(duration_ms(0.25), "250 µs");
        assert_eq!(duration_ms(61.2), "61 ms");
        assert_eq!(duration_ms(2003.3), "2.00 s");
        assert_eq!(duration_ms(185_000.0), "3 min 5 s");
    }

    #[test]
    fn times_of_today_leave_the_date_out() {
        // 2024-12-31 23:59:59.999 UTC and noon that day.
        let last_ms = 1_735_689_599_999.0;
        let noon_ms = 1_735_646_400_000.0;
        assert_eq!(clock_time_seen_at(last_ms, noon_ms), "23:59:59");
        assert_eq!(
            clock_time_seen_at(noon_ms, last_ms + 1.0),
            "2024-12-31 12:00:00"
        );
    }

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc_date_time(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date_time(951_782_400_000.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc_date_time(1_735_689_599_999.0),
            "2024-12-31 23:59:59 UTC"
        );
        assert_eq!(utc_date_time(-1000.0), "1969-12-31 23:59:59 UTC");
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn item_paths_are_bracketed_lists_and_the_root_a_dash() {
        assert_eq!(item_path(&[]), "—");
        assert_eq!(item_path(&[3]), "[3]");
        assert_eq!(item_path(&[3, 7, 4000]), "[3, 7, 4000]");
    }

    #[test]
    fn truncated_text_keeps_its_length_limit_with_the_ellipsis() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("héllo wörld", 6), "héllo…");
        assert_eq!(truncate("", 0), "");
    }
}
