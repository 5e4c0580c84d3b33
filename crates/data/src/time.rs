//! Timestamps: parsing the benchmark date formats, time marks, the sampling interval.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// Formats tried in order. `%m`, `%d` and `%H` accept one or two digits, which covers
/// exchange_rate's unpadded `YYYY/M/D H:MM`.
const FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
];

/// Parses one `date` cell; `None` when no supported format fits.
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            ["%Y-%m-%d", "%Y/%m/%d"].iter().find_map(|format| {
                NaiveDate::parse_from_str(text, format)
                    .ok()
                    .and_then(|date| date.and_hms_opt(0, 0, 0))
            })
        })
}

/// Calendar features of one row, as the release's `timeenc = 0` marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TimeMark {
    /// Four-digit year.
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Day of the week, Monday = 0.
    pub weekday: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
}

impl From<NaiveDateTime> for TimeMark {
    fn from(t: NaiveDateTime) -> Self {
        TimeMark {
            year: t.year(),
            month: t.month(),
            day: t.day(),
            weekday: t.weekday().num_days_from_monday(),
            hour: t.hour(),
            minute: t.minute(),
        }
    }
}

/// The most common positive step between consecutive timestamps, in seconds.
///
/// The mode, not the first step, so that published quirks (weather.csv repeats one
/// timestamp and skips nine steps) do not change the answer. `None` for fewer than two
/// rows or when time never moves forward.
pub(crate) fn infer_interval_seconds(timestamps: &[NaiveDateTime]) -> Option<i64> {
    let mut steps: Vec<i64> = timestamps
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).num_seconds())
        .filter(|step| *step > 0)
        .collect();
    steps.sort_unstable();
    let mut best: Option<(i64, usize)> = None;
    for run in steps.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(_, count)| run.len() > count) {
            best = Some((run[0], run.len()));
        }
    }
    best.map(|(step, _)| step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_benchmark_format() {
        let t = parse_timestamp("2016-07-01 13:05:00").unwrap();
        assert_eq!(t.to_string(), "2016-07-01 13:05:00");
        let t = parse_timestamp("1990/1/1 0:00").unwrap();
        assert_eq!(t.to_string(), "1990-01-01 00:00:00");
        let t = parse_timestamp("2010/10/10 23:00").unwrap();
        assert_eq!(t.to_string(), "2010-10-10 23:00:00");
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2016-13-01 00:00:00").is_none());
    }

    #[test]
    fn marks_use_monday_zero() {
        // 2016-07-01 was a Friday.
        let mark = TimeMark::from(parse_timestamp("2016-07-01 23:45:00").unwrap());
        assert_eq!(
            mark,
            TimeMark {
                year: 2016,
                month: 7,
                day: 1,
                weekday: 4,
                hour: 23,
                minute: 45
            }
        );
    }

    #[test]
    fn interval_is_the_most_common_step() {
        let ts: Vec<_> = [
            "2020-01-01 00:10:00",
            "2020-01-01 00:20:00",
            "2020-01-01 00:20:00",
            "2020-01-01 00:30:00",
            "2020-01-01 02:10:00",
            "2020-01-01 02:20:00",
        ]
        .iter()
        .map(|s| parse_timestamp(s).unwrap())
        .collect();
        assert_eq!(infer_interval_seconds(&ts), Some(600));
        assert_eq!(infer_interval_seconds(&ts[..1]), None);
    }
}
