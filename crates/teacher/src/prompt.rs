//! GT and HD prompts: the two sentences the teacher writes for each (window, variable).
//!
//! ```text
//! GT: From <t1> to <t2>, the values were <v1, ..., vL> every hour. The values for the next <H> hours are <g1, ..., gH>
//! HD: From <t1> to <t2>, the values were <v1, ..., vL> every hour. Forecast the values for the next <H> hours
//! ```
//!
//! The wording depends on the dataset ([`PromptTemplate`]); values are written by a
//! [`ValueFormat`] (the release's integer truncation by default). The core,
//! [`PromptBuilder::build`], takes plain slices and timestamps; [`PromptBuilder::window`]
//! is a convenience over a [`timekd_data::Window`].

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{Datelike, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use timekd_data::{Preset, Window};

/// How each value of a prompt is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ValueFormat {
    /// Truncated toward zero to an integer, as the release does (`-0.7` → `0`, never `-0`;
    /// `1008.89` → `1008`). The default, so that embeddings stay comparable with the release.
    #[default]
    Int,
    /// Rounded to this many decimals (`Fixed(2)`: `-0.004` → `0.00`, never `-0.00`).
    Fixed(u8),
}

impl ValueFormat {
    /// Appends `value` written in this format to `out`.
    ///
    /// Values are finite in practice (the data crate rejects NaN and infinities); a
    /// non-finite value is written as Rust prints it (`NaN`, `inf`).
    pub fn write(self, value: f64, out: &mut String) {
        match self {
            ValueFormat::Int => {
                let t = value.trunc();
                if t == 0.0 {
                    out.push('0');
                } else {
                    // f64 Display writes integral values without exponent or fraction, like
                    // Python's `str(int(v))`, for any magnitude.
                    let _ = write!(out, "{t}");
                }
            }
            ValueFormat::Fixed(decimals) => {
                let start = out.len();
                let _ = write!(out, "{value:.prec$}", prec = usize::from(decimals));
                let written = &out[start..];
                if written.starts_with('-') && written[1..].bytes().all(|b| b == b'0' || b == b'.')
                {
                    out.remove(start);
                }
            }
        }
    }

    /// The name used on the command line and in store fingerprints: `int` or `fixedN`.
    pub fn name(self) -> String {
        match self {
            ValueFormat::Int => "int".to_string(),
            ValueFormat::Fixed(d) => format!("fixed{d}"),
        }
    }
}

impl FromStr for ValueFormat {
    type Err = String;

    /// Parses `int` or `fixedN` (N decimals, 0 to 17).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "int" {
            return Ok(ValueFormat::Int);
        }
        s.strip_prefix("fixed")
            .and_then(|d| d.parse::<u8>().ok())
            .filter(|&d| d <= 17)
            .map(ValueFormat::Fixed)
            .ok_or_else(|| {
                format!("unknown value format `{s}`: use `int` or `fixedN` (N decimals, 0 to 17)")
            })
    }
}

/// How the first and last history timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DateFormat {
    /// `DD/MM/YYYY HH:00`: the release's format for hourly ETT data (and ECL).
    HourZeroMinutes,
    /// `DD/MM/YYYY HH:MM`: the release's format for every other dataset.
    HourMinute,
}

impl DateFormat {
    /// Appends `t` written in this format to `out`.
    pub fn write(self, t: NaiveDateTime, out: &mut String) {
        let minute = match self {
            DateFormat::HourZeroMinutes => 0,
            DateFormat::HourMinute => t.minute(),
        };
        let _ = write!(
            out,
            "{:02}/{:02}/{:04} {:02}:{:02}",
            t.day(),
            t.month(),
            t.year(),
            t.hour(),
            minute
        );
    }
}

/// The dataset-specific wording of the two prompts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTemplate {
    /// What the history values are called: `values` or `exchange rates`.
    pub history_noun: String,
    /// What the future values are called: `values` or `rates`.
    pub future_noun: String,
    /// The sampling interval after "every": `hour`, `15 minutes`, `day`.
    pub every: String,
    /// The unit of the output length: `hours`, `minutes`, `days`.
    pub unit: String,
    /// How t1 and t2 are written.
    pub date_format: DateFormat,
}

impl PromptTemplate {
    fn new(
        history_noun: &str,
        future_noun: &str,
        every: &str,
        unit: &str,
        date: DateFormat,
    ) -> Self {
        PromptTemplate {
            history_noun: history_noun.to_string(),
            future_noun: future_noun.to_string(),
            every: every.to_string(),
            unit: unit.to_string(),
            date_format: date,
        }
    }

    /// ETTh1 / ETTh2: "every hour", "hours", dates `DD/MM/YYYY HH:00`.
    pub fn ett_hourly() -> Self {
        Self::new(
            "values",
            "values",
            "hour",
            "hours",
            DateFormat::HourZeroMinutes,
        )
    }

    /// ETTm1 / ETTm2: "every 15 minutes", "minutes".
    pub fn ett_minute() -> Self {
        Self::new(
            "values",
            "values",
            "15 minutes",
            "minutes",
            DateFormat::HourMinute,
        )
    }

    /// Weather: "every 10 minutes", "minutes" (the release used this wording only when the
    /// file was named `Weather`; here it is the weather preset's wording).
    pub fn weather() -> Self {
        Self::new(
            "values",
            "values",
            "10 minutes",
            "minutes",
            DateFormat::HourMinute,
        )
    }

    /// Exchange rate: "the exchange rates were ... every day", "The rates for the next
    /// `<H>` days are", "Forecast the rates for the next `<H>` days".
    pub fn exchange_rate() -> Self {
        Self::new(
            "exchange rates",
            "rates",
            "day",
            "days",
            DateFormat::HourMinute,
        )
    }

    /// A wording derived from the sampling interval, for any other CSV: whole weeks, days,
    /// hours or minutes when the interval divides evenly, else seconds
    /// (3600 → "every hour" / "hours", 900 → "every 15 minutes" / "minutes").
    pub fn from_interval(seconds: i64) -> Self {
        let (count, singular, plural) = if seconds <= 0 {
            (1, "time step", "time steps")
        } else if seconds % 604_800 == 0 {
            (seconds / 604_800, "week", "weeks")
        } else if seconds % 86_400 == 0 {
            (seconds / 86_400, "day", "days")
        } else if seconds % 3_600 == 0 {
            (seconds / 3_600, "hour", "hours")
        } else if seconds % 60 == 0 {
            (seconds / 60, "minute", "minutes")
        } else {
            (seconds, "second", "seconds")
        };
        let every = if count == 1 {
            singular.to_string()
        } else {
            format!("{count} {plural}")
        };
        Self::new("values", "values", &every, plural, DateFormat::HourMinute)
    }

    /// The template of a dataset preset; `interval_seconds` (the inferred sampling interval)
    /// is used only for presets without a fixed wording (custom CSVs, national illness).
    pub fn for_preset(preset: Preset, interval_seconds: i64) -> Self {
        match preset {
            Preset::Etth1 | Preset::Etth2 => Self::ett_hourly(),
            Preset::Ettm1 | Preset::Ettm2 => Self::ett_minute(),
            Preset::Weather => Self::weather(),
            Preset::ExchangeRate => Self::exchange_rate(),
            Preset::NationalIllness | Preset::Custom => Self::from_interval(interval_seconds),
        }
    }
}

/// The two prompts of one (window, variable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptPair {
    /// Ground-truth prompt: history and future values.
    pub gt: String,
    /// History-only prompt.
    pub hd: String,
}

/// Writes GT and HD prompts with one template and value format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptBuilder {
    /// The dataset wording.
    pub template: PromptTemplate,
    /// How values are written.
    pub value_format: ValueFormat,
}

impl PromptBuilder {
    /// A builder with the given wording and value format.
    pub fn new(template: PromptTemplate, value_format: ValueFormat) -> Self {
        PromptBuilder {
            template,
            value_format,
        }
    }

    /// The prompts of one variable of one window.
    ///
    /// `history` are the L unscaled history values, `future` the H unscaled future values
    /// (H, written as `<H>`, is `future.len()`), `start` / `end` the timestamps of the
    /// first and last history rows.
    pub fn build(
        &self,
        history: &[f64],
        future: &[f64],
        start: NaiveDateTime,
        end: NaiveDateTime,
    ) -> PromptPair {
        let sentence = self.history_sentence(history, start, end);
        PromptPair {
            gt: sentence.clone() + &self.gt_continuation(future),
            hd: sentence + &self.hd_continuation(future.len()),
        }
    }

    /// What the GT and HD prompts of every output length start with: `From <t1> to <t2>,
    /// the values were <v1, ..., vL> every hour.` (no trailing space).
    pub fn history_sentence(
        &self,
        history: &[f64],
        start: NaiveDateTime,
        end: NaiveDateTime,
    ) -> String {
        let t = &self.template;
        let mut sentence = String::with_capacity(64 + 8 * history.len());
        sentence.push_str("From <");
        t.date_format.write(start, &mut sentence);
        sentence.push_str("> to <");
        t.date_format.write(end, &mut sentence);
        let _ = write!(sentence, ">, the {} were <", t.history_noun);
        self.write_values(history, &mut sentence);
        let _ = write!(sentence, "> every {}.", t.every);
        sentence
    }

    /// The rest of the GT prompt after the history sentence, for H = `future.len()`:
    /// ` The values for the next <H> hours are <g1, ..., gH>` (leading space).
    pub fn gt_continuation(&self, future: &[f64]) -> String {
        let t = &self.template;
        let mut out = String::with_capacity(48 + 8 * future.len());
        let _ = write!(
            out,
            " The {} for the next <{}> {} are <",
            t.future_noun,
            future.len(),
            t.unit
        );
        self.write_values(future, &mut out);
        out.push('>');
        out
    }

    /// The rest of the HD prompt after the history sentence: ` Forecast the values for the
    /// next <H> hours` (leading space).
    pub fn hd_continuation(&self, output_len: usize) -> String {
        let t = &self.template;
        format!(
            " Forecast the {} for the next <{output_len}> {}",
            t.future_noun, t.unit
        )
    }

    /// The prompts of variable `var` (model order) of a data window.
    pub fn window(&self, window: &Window<'_>, var: usize) -> PromptPair {
        self.build(
            window.history_raw(var),
            window.future_raw(var),
            window.history_start(),
            window.history_end(),
        )
    }

    fn write_values(&self, values: &[f64], out: &mut String) {
        for (i, &v) in values.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.value_format.write(v, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn fmt(format: ValueFormat, v: f64) -> String {
        let mut s = String::new();
        format.write(v, &mut s);
        s
    }

    #[test]
    fn int_format_truncates_toward_zero_without_negative_zero() {
        let cases = [
            (5.827, "5"),
            (-0.4, "0"),
            (-0.0, "0"),
            (-1.7, "-1"),
            (30.53, "30"),
            (1008.89, "1008"),
            (-12.0, "-12"),
            (1e20, "100000000000000000000"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt(ValueFormat::Int, v), want, "value {v}");
        }
    }

    #[test]
    fn fixed_format_rounds_without_negative_zero() {
        assert_eq!(fmt(ValueFormat::Fixed(2), 5.827), "5.83");
        assert_eq!(fmt(ValueFormat::Fixed(2), -0.004), "0.00");
        assert_eq!(fmt(ValueFormat::Fixed(1), -1.75), "-1.8");
        assert_eq!(fmt(ValueFormat::Fixed(0), -0.2), "0");
    }

    #[test]
    fn value_format_parses_and_names() {
        assert_eq!("int".parse::<ValueFormat>(), Ok(ValueFormat::Int));
        assert_eq!("fixed3".parse::<ValueFormat>(), Ok(ValueFormat::Fixed(3)));
        assert!("fixed".parse::<ValueFormat>().is_err());
        assert!("float".parse::<ValueFormat>().is_err());
        assert_eq!(ValueFormat::Fixed(2).name(), "fixed2");
        assert_eq!(ValueFormat::Int.name(), "int");
    }

    #[test]
    fn ett_hourly_prompts_match_the_release_wording() {
        let b = PromptBuilder::new(PromptTemplate::ett_hourly(), ValueFormat::Int);
        let p = b.build(
            &[5.8, -0.7, 4.1],
            &[1.0, -2.5],
            at(2016, 7, 1, 0, 0),
            at(2016, 7, 1, 2, 30),
        );
        assert_eq!(
            p.gt,
            "From <01/07/2016 00:00> to <01/07/2016 02:00>, the values were <5, 0, 4> every hour. \
             The values for the next <2> hours are <1, -2>"
        );
        assert_eq!(
            p.hd,
            "From <01/07/2016 00:00> to <01/07/2016 02:00>, the values were <5, 0, 4> every hour. \
             Forecast the values for the next <2> hours"
        );
    }

    #[test]
    fn other_wordings() {
        let start = at(1990, 1, 2, 0, 0);
        let end = at(1990, 1, 9, 23, 50);
        let ex = PromptBuilder::new(PromptTemplate::exchange_rate(), ValueFormat::Int).build(
            &[1.5],
            &[2.5],
            start,
            end,
        );
        assert_eq!(
            ex.gt,
            "From <02/01/1990 00:00> to <09/01/1990 23:50>, the exchange rates were <1> every day. \
             The rates for the next <1> days are <2>"
        );
        assert!(ex.hd.ends_with("Forecast the rates for the next <1> days"));
        let w = PromptBuilder::new(PromptTemplate::weather(), ValueFormat::Int).build(
            &[1.0],
            &[2.0],
            start,
            end,
        );
        assert!(w.hd.contains("> every 10 minutes. Forecast the values for the next <1> minutes"));
        let m = PromptBuilder::new(PromptTemplate::ett_minute(), ValueFormat::Int).build(
            &[1.0],
            &[2.0],
            start,
            end,
        );
        assert!(m.gt.contains("every 15 minutes. The values for the next <1> minutes are <2>"));
        assert!(m.gt.contains("<09/01/1990 23:50>"));
    }

    #[test]
    fn generic_template_from_interval() {
        let cases = [
            (3600, "hour", "hours"),
            (900, "15 minutes", "minutes"),
            (60, "minute", "minutes"),
            (86_400, "day", "days"),
            (604_800, "week", "weeks"),
            (7200, "2 hours", "hours"),
            (30, "30 seconds", "seconds"),
        ];
        for (s, every, unit) in cases {
            let t = PromptTemplate::from_interval(s);
            assert_eq!((t.every.as_str(), t.unit.as_str()), (every, unit), "{s} s");
        }
        assert_eq!(
            PromptTemplate::for_preset(Preset::Custom, 3600),
            PromptTemplate::from_interval(3600)
        );
        assert_eq!(
            PromptTemplate::for_preset(Preset::Etth2, 1),
            PromptTemplate::ett_hourly()
        );
    }
}
