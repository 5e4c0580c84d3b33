//! A split's windows at any output length, from one loaded dataset.
//!
//! A split's rows do not depend on the output length H, and window `i` always starts at the
//! split's row `i`: its L history rows are the same for every H, and its future is the next
//! H rows. So one [`Dataset`](crate::Dataset) serves every H its rows allow: window `i`
//! exists for H while `i < rows − L − H + 1` ([`Split::num_windows_at`]).

use crate::dataset::{Split, Window};
use crate::error::DataError;

impl<'a> Split<'a> {
    /// Windows of this split at output length `output_len`: rows − L − `output_len` + 1, or 0
    /// when the split is too short for one.
    pub fn num_windows_at(&self, output_len: usize) -> usize {
        let needed = self.dataset().input_len() + output_len;
        (self.rows().len() + 1).saturating_sub(needed)
    }

    /// Window `index` with `output_len` future rows (which may differ from the dataset's
    /// H); `None` when `output_len` is 0 or `index >= num_windows_at(output_len)`.
    pub fn window_at(&self, index: usize, output_len: usize) -> Option<Window<'a>> {
        (output_len > 0 && index < self.num_windows_at(output_len))
            .then(|| Window::at(self, index, output_len))
    }

    /// The windows this split holds at `output_len`, or an error naming the split, its rows
    /// and what one window needs when it holds none.
    pub fn check_output_len(&self, output_len: usize) -> Result<usize, DataError> {
        if output_len == 0 {
            return Err(DataError::ZeroLength {
                flag: "--output-len",
            });
        }
        match self.num_windows_at(output_len) {
            0 => {
                let rows = self.rows();
                Err(DataError::SplitTooShort {
                    path: self.dataset().source_path().to_path_buf(),
                    split: self.kind().name(),
                    start: rows.start,
                    end: rows.end,
                    rows: rows.len(),
                    needed: self.dataset().input_len() + output_len,
                })
            }
            windows => Ok(windows),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;
    use std::path::Path;

    use crate::{Dataset, DatasetOptions, SplitKind};

    /// 200 hourly rows of two variables, row r holding r and −r.
    fn dataset(output_len: usize) -> Dataset {
        let mut csv = String::from("date,a,OT\n");
        for r in 0..200 {
            let (day, hour) = (1 + r / 24, r % 24);
            writeln!(csv, "2020-01-{day:02} {hour:02}:00:00,{r},{}", -(r as i64)).unwrap();
        }
        let options = DatasetOptions {
            input_len: 8,
            output_len,
            ..Default::default()
        };
        Dataset::from_csv_bytes(csv.as_bytes(), Path::new("mine.csv"), &options).unwrap()
    }

    #[test]
    fn a_window_at_another_length_keeps_its_history_and_extends_its_future() {
        let data = dataset(4);
        let train = data.split(SplitKind::Train);
        // Train is rows 0..140 (70%): at H = 4, 140 − 8 − 4 + 1 windows.
        assert_eq!(train.num_windows(), 129);
        assert_eq!(train.num_windows_at(4), 129);
        assert_eq!(train.num_windows_at(16), 117);
        let short = train.window(5);
        let long = train.window_at(5, 16).unwrap();
        assert_eq!(long.history_rows(), short.history_rows());
        assert_eq!(long.history_raw(0), short.history_raw(0));
        assert_eq!(long.history_start(), short.history_start());
        assert_eq!(long.future_rows(), 13..29);
        assert_eq!(&long.future_raw(1)[..4], short.future_raw(1));

        // The same window from a dataset loaded at H = 16.
        let other = dataset(16);
        let same = other.split(SplitKind::Train).window(5);
        assert_eq!(same.future_raw(0), long.future_raw(0));
        assert_eq!(same.history_end(), long.history_end());
    }

    #[test]
    fn windows_past_the_rows_do_not_exist() {
        let data = dataset(4);
        let val = data.split(SplitKind::Val);
        let rows = val.rows().len();
        assert_eq!(val.num_windows_at(rows - 8), 1);
        assert!(val.window_at(0, rows - 8).is_some());
        assert!(val.window_at(1, rows - 8).is_none());
        assert_eq!(val.num_windows_at(rows), 0);
        assert!(val.window_at(0, 0).is_none());
        let err = val.check_output_len(rows).unwrap_err().to_string();
        assert!(err.contains("the val split has"), "{err}");
        assert!(err.contains(&format!("= {}", rows + 8)), "{err}");
        assert_eq!(val.check_output_len(rows - 9).unwrap(), 2);
    }
}
