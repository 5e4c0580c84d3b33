//! A run's test results in Time-Series-Library's layout, for table scripts written against
//! it (`exp/exp_long_term_forecasting.py`, `test()`):
//!
//! ```text
//! <root>/results/<setting>/metrics.npy     f32 [5]: MAE, MSE, RMSE, MAPE, MSPE
//! <root>/results/<setting>/pred.npy        f32 [windows, H, V]
//! <root>/results/<setting>/true.npy        f32 [windows, H, V]
//! <root>/result_long_term_forecast.txt     "<setting>  \n" "mse:<mse>, mae:<mae>\n" "\n"
//! ```
//!
//! As in TSLib, the arrays and metrics are in the data's units when the run was tested with
//! `--inverse`, else on the scaled data; V is every variable, or the target alone in `MS`
//! mode. TSLib divides by zero in MAPE/MSPE where a true value is 0; here those elements are
//! left out (as in `results.json`), and a metric with no element left is NaN. The text file
//! gets one block per setting: a setting written again (a rerun) replaces its block.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use timekd_data::Features;

use crate::error::{Result, StudentError};
use crate::npy::write_npy;
use crate::run_dir::RunDir;
use crate::test_run::TestResults;

/// The text file TSLib appends every long-term-forecast result to.
pub const TSLIB_SUMMARY_FILE: &str = "result_long_term_forecast.txt";

/// The fields of TSLib's setting name (`run.py`) a TimeKD run fills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TslibSetting {
    /// TSLib's `--model_id`: `<dataset>_<L>_<H>`, as its scripts name runs.
    pub model_id: String,
    /// TSLib's `--data`: the ETT name, else `custom`.
    pub data: String,
    /// `--features`.
    pub features: Features,
    /// `--seq_len` (L).
    pub seq_len: usize,
    /// `--pred_len` (H).
    pub pred_len: usize,
    /// `--d_model`: the student's width C.
    pub d_model: usize,
    /// `--n_heads`.
    pub n_heads: usize,
    /// `--e_layers`.
    pub e_layers: usize,
    /// `--d_ff`.
    pub d_ff: usize,
    /// `--des`: the experiment's description (`Exp` here, or `paper` under the release's
    /// checkpoint selection, so the two never share a setting).
    pub des: String,
    /// The iteration `ii` of TSLib's `--itr` loop: the seed's position in the sweep.
    pub iteration: usize,
}

impl TslibSetting {
    /// The setting name, TSLib's format with TimeKD's values: no label part (`ll0`), no
    /// decoder (`dl0`), TSLib's defaults for the fields TimeKD has no use for (`expand2`,
    /// `dc4`, `fc1`, `ebtimeF`, `dtTrue`).
    pub fn name(&self) -> String {
        format!(
            "long_term_forecast_{}_TimeKD_{}_ft{}_sl{}_ll0_pl{}_dm{}_nh{}_el{}_dl0_df{}_expand2_dc4_fc1_ebtimeF_dtTrue_{}_{}",
            self.model_id,
            self.data,
            self.features,
            self.seq_len,
            self.pred_len,
            self.d_model,
            self.n_heads,
            self.e_layers,
            self.d_ff,
            self.des,
            self.iteration
        )
    }
}

/// Writes `run`'s tested arrays and metrics under `root` in TSLib's layout (module docs);
/// returns the setting's results directory.
pub fn write_tslib(
    root: &Path,
    setting: &TslibSetting,
    run: &RunDir,
    results: &TestResults,
) -> Result<PathBuf> {
    let name = setting.name();
    let dir = root.join("results").join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| StudentError::io(&dir, e))?;
    let data_units = results.data_units.is_some();
    let set = results.data_units.as_ref().unwrap_or(&results.scaled);
    let m = &set.overall;
    let metrics = [
        m.mae,
        m.mse,
        m.rmse,
        m.mape.unwrap_or(f64::NAN),
        m.mspe.unwrap_or(f64::NAN),
    ];
    write_npy(&dir.join("metrics.npy"), &[5], &metrics.map(|v| v as f32))?;
    // The run's own arrays, byte for byte (the same f32 [windows, H, V] layout).
    for (from, to) in [
        (run.predictions(data_units), "pred.npy"),
        (run.truths(data_units), "true.npy"),
    ] {
        let bytes = std::fs::read(&from).map_err(|e| StudentError::io(&from, e))?;
        crate::output::write_file(&dir.join(to), &bytes)?;
    }
    let summary = root.join(TSLIB_SUMMARY_FILE);
    let block = format!("{name}  \nmse:{}, mae:{}\n\n", m.mse, m.mae);
    let old = match std::fs::read_to_string(&summary) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(StudentError::io(&summary, e)),
    };
    crate::output::write_file(&summary, replace_block(&old, &name, &block).as_bytes())?;
    Ok(dir)
}

/// `text` with the block of `setting` (its line, the metrics line and a blank line)
/// replaced by `block`, or `block` appended.
fn replace_block(text: &str, setting: &str, block: &str) -> String {
    let header = format!("{setting}  \n");
    let at = text
        .match_indices(&header)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text[..i].ends_with('\n'));
    match at {
        Some(start) => {
            let rest = &text[start + header.len()..];
            // The metrics line, then the blank line.
            let end = rest
                .match_indices('\n')
                .nth(1)
                .map_or(text.len(), |(i, _)| start + header.len() + i + 1);
            format!("{}{block}{}", &text[..start], &text[end..])
        }
        None => format!("{text}{block}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_written_again_replaces_its_block_and_keeps_the_others() {
        let a = "a  \nmse:1, mae:2\n\n";
        let b = "b  \nmse:3, mae:4\n\n";
        let text = replace_block(&replace_block("", "a", a), "b", b);
        assert_eq!(text, format!("{a}{b}"));
        let again = replace_block(&text, "a", "a  \nmse:5, mae:6\n\n");
        assert_eq!(again, format!("a  \nmse:5, mae:6\n\n{b}"));
        // A setting whose name ends another's is not confused with it.
        let xa = "xa  \nmse:7, mae:8\n\n";
        let text = replace_block(&format!("{xa}{a}"), "a", "a  \nmse:9, mae:9\n\n");
        assert_eq!(text, format!("{xa}a  \nmse:9, mae:9\n\n"));
    }

    #[test]
    fn setting_names_follow_the_time_series_library_format() {
        let setting = TslibSetting {
            model_id: "ETTh1_96_24".into(),
            data: "ETTh1".into(),
            features: Features::M,
            seq_len: 96,
            pred_len: 24,
            d_model: 64,
            n_heads: 4,
            e_layers: 2,
            d_ff: 3072,
            des: "Exp".into(),
            iteration: 1,
        };
        assert_eq!(
            setting.name(),
            "long_term_forecast_ETTh1_96_24_TimeKD_ETTh1_ftM_sl96_ll0_pl24_dm64_nh4_el2_dl0_df3072_expand2_dc4_fc1_ebtimeF_dtTrue_Exp_1"
        );
    }
}
