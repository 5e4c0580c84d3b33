//! Loading the parity fixture set: `$TIMEKD_PARITY_DIR`, else the committed copy.
//! Every size comes from its `meta.json`.

#![allow(dead_code)] // each test binary uses a different part of these helpers

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use chrono::{NaiveDate, NaiveDateTime};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use timekd_data::{Dataset, DatasetOptions, Preset, Window};
use timekd_teacher::{
    EncodedPrompt, PromptBuilder, PromptTemplate, PromptTokenizer, ValueFormat, WindowInput,
};

pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("TIMEKD_PARITY_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity"),
    }
}

/// ETTh1 (the repository's copy), windowed at H = `output_len`.
pub fn dataset(output_len: usize) -> Dataset {
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/ETTh1.csv");
    Dataset::load(
        csv.as_ref(),
        &DatasetOptions {
            output_len,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The prompt builder of `data`'s preset, integer values.
pub fn builder(data: &Dataset) -> PromptBuilder {
    let template = PromptTemplate::for_preset(data.preset(), data.interval_seconds());
    PromptBuilder::new(template, ValueFormat::Int)
}

/// The GT and HD prompts of variable `v` of `window` at each of `lengths` (its future cut to
/// each), the history sentence tokenised once for all of them, as extraction encodes them.
pub fn prompts_at_lengths(
    builder: &PromptBuilder,
    tokenizer: &impl PromptTokenizer,
    window: &Window<'_>,
    v: usize,
    lengths: &[usize],
) -> Vec<(EncodedPrompt, EncodedPrompt)> {
    let (history, future) = (window.history_raw(v), window.future_raw(v));
    let head = builder.history_sentence(history, window.history_start(), window.history_end());
    let continuations: Vec<(String, String)> = lengths
        .iter()
        .map(|&h| {
            (
                builder.gt_continuation(&future[..h]),
                builder.hd_continuation(h),
            )
        })
        .collect();
    tokenizer
        .encode_pairs_after(&head, &continuations)
        .expect("prompts encode")
}

pub fn model_dir() -> PathBuf {
    fixture_dir().join("tiny_gpt2")
}

pub fn device() -> Device {
    Device::flex()
}

pub fn read_json(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A float tensor of a fixture safetensors file, as f64 values plus its shape.
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Array {
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        let shape: [usize; D] = self.shape.clone().try_into().expect("rank");
        let v: Vec<f32> = self.values.iter().map(|&x| x as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// Row `i` of the leading axis, flattened.
    pub fn row(&self, i: usize) -> &[f64] {
        let stride: usize = self.shape[1..].iter().product();
        &self.values[i * stride..(i + 1) * stride]
    }
}

pub struct SafetensorsFile {
    bytes: Vec<u8>,
}

impl SafetensorsFile {
    pub fn open(name: &str) -> Self {
        let path = fixture_dir().join(name);
        SafetensorsFile {
            bytes: std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn get(&self, name: &str) -> Array {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture tensor {name}"));
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        Array {
            shape: view.shape().to_vec(),
            values,
        }
    }
}

/// The sizes of the fixture set.
pub struct Meta {
    pub dataset: String,
    pub n_vars: usize,
    pub input_len: usize,
    pub output_len: usize,
    pub windows: Vec<usize>,
}

pub fn meta() -> Meta {
    let m = read_json("meta.json");
    let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("meta.json: {k}")) as usize;
    Meta {
        dataset: m["dataset"].as_str().unwrap_or("ETTh1").to_string(),
        n_vars: n("num_nodes"),
        input_len: n("input_len"),
        output_len: n("output_len"),
        windows: m["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap() as usize)
            .collect(),
    }
}

/// The fixture's windows, rebuilt from `x_raw`, `y_raw` and `x_mark` of
/// `teacher.safetensors`: values per variable, contiguous.
pub struct FixtureWindows {
    pub index: Vec<usize>,
    pub start: Vec<NaiveDateTime>,
    pub end: Vec<NaiveDateTime>,
    /// [window][variable] → L values.
    pub history: Vec<Vec<Vec<f64>>>,
    /// [window][variable] → H values.
    pub future: Vec<Vec<Vec<f64>>>,
    /// Seconds between the first two history rows.
    pub interval_seconds: i64,
}

fn mark_time(marks: &[f64]) -> NaiveDateTime {
    // year, month, day, weekday, hour, minute
    NaiveDate::from_ymd_opt(marks[0] as i32, marks[1] as u32, marks[2] as u32)
        .unwrap()
        .and_hms_opt(marks[4] as u32, marks[5] as u32, 0)
        .unwrap()
}

pub fn windows(meta: &Meta) -> FixtureWindows {
    let f = SafetensorsFile::open("teacher.safetensors");
    let x = f.get("x_raw");
    let y = f.get("y_raw");
    let marks = f.get("x_mark");
    let (w, l, n) = (x.shape[0], x.shape[1], x.shape[2]);
    let h = y.shape[1];
    assert_eq!(
        (w, l, n, h),
        (
            meta.windows.len(),
            meta.input_len,
            meta.n_vars,
            meta.output_len
        )
    );
    let m = marks.shape[2];
    let per_var = |a: &Array, i: usize, t: usize| -> Vec<Vec<f64>> {
        let row = a.row(i);
        (0..n)
            .map(|v| (0..t).map(|s| row[s * n + v]).collect())
            .collect()
    };
    let first = mark_time(&marks.row(0)[..m]);
    let second = mark_time(&marks.row(0)[m..2 * m]);
    FixtureWindows {
        index: meta.windows.clone(),
        start: (0..w).map(|i| mark_time(&marks.row(i)[..m])).collect(),
        end: (0..w)
            .map(|i| mark_time(&marks.row(i)[(l - 1) * m..l * m]))
            .collect(),
        history: (0..w).map(|i| per_var(&x, i, l)).collect(),
        future: (0..w).map(|i| per_var(&y, i, h)).collect(),
        interval_seconds: (second - first).num_seconds(),
    }
}

impl FixtureWindows {
    pub fn inputs(&self) -> Vec<WindowInput<'_>> {
        (0..self.index.len())
            .map(|i| WindowInput {
                index: self.index[i],
                start: self.start[i],
                end: self.end[i],
                history: self.history[i].iter().map(Vec::as_slice).collect(),
                future: self.future[i].iter().map(Vec::as_slice).collect(),
            })
            .collect()
    }
}

pub fn prompt_builder(meta: &Meta, windows: &FixtureWindows) -> PromptBuilder {
    let preset = Preset::from_name(&meta.dataset).unwrap_or(Preset::Custom);
    PromptBuilder::new(
        PromptTemplate::for_preset(preset, windows.interval_seconds),
        ValueFormat::Int,
    )
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}
