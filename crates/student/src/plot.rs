//! PNG line plots drawn with plotters' bitmap backend and encoded with `png`.
//!
//! No fonts are needed (none may be installed): the plots carry no text. Their legends are
//! in the docs of each function.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, StudentError};
use crate::metrics::EpochMetrics;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;

/// One polyline in data coordinates.
struct Curve<'a> {
    points: Vec<(f64, f64)>,
    color: &'a RGBColor,
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> StudentError {
    StudentError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Draws curves over a light grid (10×8 cells spanning the data range) and writes a PNG.
fn draw(path: &Path, curves: &[Curve], marker_x: Option<f64>) -> Result<()> {
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all().filter(|(_, y)| y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let (y0, y1) = (y0 - pad, y1 + pad);

    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(24)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_error(path, e))?;
        let grid = RGBColor(225, 225, 225);
        for i in 0..=10 {
            let x = x0 + (x1 - x0) * f64::from(i) / 10.0;
            chart
                .draw_series(LineSeries::new([(x, y0), (x, y1)], &grid))
                .map_err(|e| plot_error(path, e))?;
        }
        for i in 0..=8 {
            let y = y0 + (y1 - y0) * f64::from(i) / 8.0;
            chart
                .draw_series(LineSeries::new([(x0, y), (x1, y)], &grid))
                .map_err(|e| plot_error(path, e))?;
        }
        if let Some(x) = marker_x {
            chart
                .draw_series(LineSeries::new([(x, y0), (x, y1)], &RGBColor(60, 170, 60)))
                .map_err(|e| plot_error(path, e))?;
        }
        for curve in curves {
            let style = ShapeStyle::from(curve.color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    curve.points.iter().copied().filter(|(_, y)| y.is_finite()),
                    style,
                ))
                .map_err(|e| plot_error(path, e))?;
        }
        root.present().map_err(|e| plot_error(path, e))?;
    }
    write_png(path, &buffer)
}

fn write_png(path: &Path, rgb: &[u8]) -> Result<()> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| plot_error(path, e))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| plot_error(path, e))?;
    writer.finish().map_err(|e| plot_error(path, e))?;
    crate::output::write_file(path, &bytes)
}

/// Loss curves: training total loss in blue, validation total loss in orange, and a green
/// vertical line at the best validation epoch. x = epoch, y = loss.
pub fn plot_losses(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let curve = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|m| (m.epoch as f64, f(m))).collect()
    };
    let best = history
        .iter()
        .filter(|m| m.best)
        .map(|m| m.epoch as f64)
        .next_back();
    draw(
        path,
        &[
            Curve {
                points: curve(|m| m.train.total),
                color: &RGBColor(31, 119, 180),
            },
            Curve {
                points: curve(|m| m.val.total),
                color: &RGBColor(255, 127, 14),
            },
        ],
        best,
    )
}

/// History and forecast of one variable: history in blue at x = −L … −1, forecast in red
/// at x = 0 … H−1, a green line at x = 0.
pub fn plot_forecast(path: &Path, history: &[f64], forecast: &[f64]) -> Result<()> {
    let l = history.len() as f64;
    let history: Vec<(f64, f64)> = history
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64 - l, *v))
        .collect();
    // Join the two curves at the last observed value.
    let mut future: Vec<(f64, f64)> = Vec::with_capacity(forecast.len() + 1);
    if let Some(&last) = history.last() {
        future.push(last);
    }
    future.extend(forecast.iter().enumerate().map(|(i, v)| (i as f64, *v)));
    draw(
        path,
        &[
            Curve {
                points: history,
                color: &RGBColor(31, 119, 180),
            },
            Curve {
                points: future,
                color: &RGBColor(214, 39, 40),
            },
        ],
        Some(0.0),
    )
}
