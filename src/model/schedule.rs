//! A Timer block's schedule, as CloudWatch wrote it: `rate(5 minutes)` or
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, in UTC.
//!
//! Cron expressions are parsed by `croner` in its Quartz mode (weekdays 1–7 from Sunday, `?`, `L`, `W`,
//! `#`, steps like `0/15`), to which CloudWatch's six fields are handed with a seconds field of `0` in
//! front. Braid also takes rates in seconds (`rate(5 seconds)`), which CloudWatch did not, for tests
//! and local use.

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// When a Timer fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every this many seconds, counted from when serving started.
    Rate(u64),
    Cron(Box<Cron>),
}

impl Schedule {
    /// Parses a schedule expression, or says what is wrong with it in a sentence.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let expression = expression.trim();
        if let Some(inner) = call(expression, "rate") {
            return rate(inner).map(Self::Rate);
        }
        if let Some(inner) = call(expression, "cron") {
            return cron(inner).map(|c| Self::Cron(Box::new(c)));
        }
        if expression.is_empty() {
            return Err("has no schedule: write rate(5 minutes) or cron(0 12 * * ? *)".to_owned());
        }
        Err(format!(
            "has the schedule {expression:?}, which is neither rate(…) nor cron(…)"
        ))
    }

    /// The first time after `after` that it fires. For a rate, `after` is the last firing (or when
    /// serving started); `None` for a cron expression with no time left (`cron(0 0 1 1 ? 2001)`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Rate(seconds) => {
                after.checked_add_signed(TimeDelta::seconds(i64::try_from(*seconds).ok()?))
            }
            Self::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
        }
    }
}

/// The text between `name(` and `)`.
fn call<'a>(expression: &'a str, name: &str) -> Option<&'a str> {
    expression
        .strip_prefix(name)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn rate(inner: &str) -> Result<u64, String> {
    let mut words = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "has the rate ({inner}), which is not a number and a unit, as in rate(5 minutes)"
        ));
    };
    let value: u64 =
        value.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
            format!("has the rate ({inner}), whose value is not a whole number ≥ 1")
        })?;
    let seconds = match unit.to_ascii_lowercase().trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => {
            return Err(format!(
                "has the rate ({inner}), whose unit {unit:?} is not seconds, minutes, hours or days"
            ));
        }
    };
    value
        .checked_mul(seconds)
        .ok_or_else(|| format!("has the rate ({inner}), which is too long"))
}

fn cron(inner: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "has the cron expression ({inner}) with {} fields; CloudWatch's have six: minutes, hours, \
             day of month, month, day of week, year",
            fields.len()
        ));
    }
    // CloudWatch takes one of the two day fields, never both: the other is `?`.
    if (fields[2] == "?") == (fields[4] == "?") {
        return Err(format!(
            "has the cron expression ({inner}), which needs `?` in exactly one of day of month and \
             day of week"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        .sloppy_ranges(true)
        .build()
        .parse(&format!("0 {}", fields.join(" ")))
        .map_err(|e| format!("has the cron expression ({inner}), which can't be read: {e}"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn next(expression: &str, after: &str) -> String {
        Schedule::parse(expression)
            .expect("parses")
            .next_after(at(after))
            .expect("a next time")
            .to_rfc3339()
    }

    #[test]
    fn rates_count_from_the_last_firing_in_any_unit() {
        assert_eq!(
            next("rate(2 minutes)", "2026-03-01T10:00:30Z"),
            "2026-03-01T10:02:30+00:00"
        );
        assert_eq!(
            next("rate(1 day)", "2026-03-01T10:00:00Z"),
            "2026-03-02T10:00:00+00:00"
        );
        assert_eq!(
            next("rate(5 seconds)", "2026-03-01T10:00:00Z"),
            "2026-03-01T10:00:05+00:00"
        );
        assert_eq!(
            next(" rate( 1 hour ) ", "2026-03-01T10:00:00Z"),
            "2026-03-01T11:00:00+00:00"
        );
    }

    #[test]
    fn cloudwatch_cron_expressions_fire_in_utc() {
        // Noon every day.
        assert_eq!(
            next("cron(0 12 * * ? *)", "2026-03-01T12:00:00Z"),
            "2026-03-02T12:00:00+00:00"
        );
        // 10:15 on weekdays (Sunday is 1): from a Saturday, the Monday.
        assert_eq!(
            next("cron(15 10 ? * 2-6 *)", "2026-02-28T11:00:00Z"),
            "2026-03-02T10:15:00+00:00"
        );
        // Every 15 minutes from minute 0, written as CloudWatch's examples do.
        assert_eq!(
            next("cron(0/15 * * * ? *)", "2026-03-01T10:16:00Z"),
            "2026-03-01T10:30:00+00:00"
        );
        // The last day of the month, the last Friday (6L), the second Tuesday (3#2), the weekday
        // nearest the 15th (15 March 2026 is a Sunday: Monday the 16th).
        assert_eq!(
            next("cron(0 0 L * ? *)", "2026-02-10T00:00:00Z"),
            "2026-02-28T00:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 0 ? * 6L *)", "2026-03-01T00:00:00Z"),
            "2026-03-27T00:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 8 ? * 3#2 *)", "2026-03-01T00:00:00Z"),
            "2026-03-10T08:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 9 15W * ? *)", "2026-03-01T00:00:00Z"),
            "2026-03-16T09:00:00+00:00"
        );
        // Named days and a year range.
        assert_eq!(
            next("cron(30 6 ? * MON-FRI 2026-2027)", "2026-03-01T00:00:00Z"),
            "2026-03-02T06:30:00+00:00"
        );
        assert_eq!(
            Schedule::parse("cron(0 0 1 1 ? 2001)")
                .expect("parses")
                .next_after(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            None
        );
    }

    #[test]
    fn a_bad_schedule_says_what_is_wrong() {
        let error = |expression| Schedule::parse(expression).expect_err("refused");
        assert_eq!(
            error(""),
            "has no schedule: write rate(5 minutes) or cron(0 12 * * ? *)"
        );
        assert_eq!(
            error("every day"),
            "has the schedule \"every day\", which is neither rate(…) nor cron(…)"
        );
        assert_eq!(
            error("rate(0 minutes)"),
            "has the rate (0 minutes), whose value is not a whole number ≥ 1"
        );
        assert_eq!(
            error("rate(5 fortnights)"),
            "has the rate (5 fortnights), whose unit \"fortnights\" is not seconds, minutes, hours or days"
        );
        assert_eq!(
            error("rate(5)"),
            "has the rate (5), which is not a number and a unit, as in rate(5 minutes)"
        );
        assert!(error("cron(0 12 * * *)").contains("with 5 fields"));
        assert!(error("cron(0 12 * * * *)").contains("exactly one of day of month"));
        assert!(error("cron(0 12 ? * ? *)").contains("exactly one of day of month"));
        assert!(
            error("cron(0 25 * * ? *)")
                .starts_with("has the cron expression (0 25 * * ? *), which can't be read: "),
            "{}",
            error("cron(0 25 * * ? *)")
        );
    }
}
