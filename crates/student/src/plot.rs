//! PNG plots drawn with plotters' bitmap backend and encoded with `png`: loss curves per
//! term and forecasts, with titles, axis labels, tick labels and legends.
//!
//! Text is drawn with DejaVu Sans, shipped in `assets/` (Bitstream Vera licence, beside it)
//! and registered with plotters' `ab_glyph` renderer: no system font or fontconfig needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Result, StudentError};
use crate::metrics::EpochMetrics;

/// DejaVu Sans 2.37 (Debian's fonts-dejavu-core).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// The y axis of loss curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossScale {
    /// Plain values.
    #[default]
    Linear,
    /// Base-10 logarithm (tick labels show the values).
    Log,
}

/// One variable's forecast: the history before it and, where known, the truth.
#[derive(Debug, Clone)]
pub struct ForecastPlot<'a> {
    /// The chart's title.
    pub title: String,
    /// The variable's name (the y axis label).
    pub variable: &'a str,
    /// The L history values, drawn at steps −L … −1.
    pub history: &'a [f64],
    /// The H forecast values, drawn at steps 0 … H−1.
    pub forecast: &'a [f64],
    /// The H true values, when known.
    pub truth: Option<&'a [f64]>,
}

/// A named polyline in data coordinates.
struct Curve {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
}

/// What one chart shows.
struct Panel {
    title: String,
    x_label: String,
    y_label: String,
    curves: Vec<Curve>,
    /// A vertical line and its legend entry.
    marker: Option<(f64, String)>,
    log_y: bool,
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> StudentError {
    StudentError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn register_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(())
        .ok_or_else(|| "the shipped DejaVu Sans font did not load".into())
}

/// Renders `draw` on a white `width`×`height` canvas and writes it as a PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font().map_err(|e| plot_error(path, e))?;
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root).map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    write_png(path, &buffer, width, height)
}

fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| plot_error(path, e))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| plot_error(path, e))?;
        writer.finish().map_err(|e| plot_error(path, e))?;
    }
    timekd_data::files::write_atomic(path, &bytes).map_err(|e| StudentError::io(path, e))
}

/// The data range of `panel`'s finite points, padded by 5% vertically.
fn ranges(panel: &Panel) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let points = panel.curves.iter().flat_map(|c| c.points.iter());
    for &(x, y) in points.filter(|(_, y)| y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    (x0..x1, y0 - pad..y1 + pad)
}

/// Draws one chart of `panel` on `area`.
fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    panel: &Panel,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (xs, ys) = ranges(panel);
    let (y0, y1) = (ys.start, ys.end);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(78)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| err(&e))?;
    let log_y = panel.log_y;
    let y_ticks = move |v: &f64| {
        let value = if log_y { 10f64.powf(*v) } else { *v };
        let magnitude = value.abs();
        if magnitude != 0.0 && !(1e-3..1e4).contains(&magnitude) {
            format!("{value:.1e}")
        } else {
            format!("{value:.3}")
        }
    };
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .y_label_formatter(&y_ticks)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(&e))?;
    if let Some((x, label)) = &panel.marker {
        let style = ShapeStyle::from(GREEN).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(*x, y0), (*x, y1)], 8, 6, style))
            .map_err(|e| err(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for curve in &panel.curves {
        let style = ShapeStyle::from(curve.color).stroke_width(2);
        let points: Vec<(f64, f64)> = curve
            .points
            .iter()
            .copied()
            .filter(|(_, y)| y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| err(&e))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if points.len() < 30 {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, style.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FAMILY, 14))
        .draw()
        .map_err(|e| err(&e))
}

/// Loss curves on a linear axis; see [`plot_losses_with`].
pub fn plot_losses(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    plot_losses_with(path, history, LossScale::Linear)
}

/// Loss curves, one chart per term (total, forecast, reconstruction, feature and attention
/// distillation; train in blue, validation in orange, the best validation epoch as a dashed
/// green line) and the learning rate. x = epoch (0-based, as in `metrics.jsonl`).
pub fn plot_losses_with(path: &Path, history: &[EpochMetrics], scale: LossScale) -> Result<()> {
    let log_y = scale == LossScale::Log;
    let value = |v: f64| if log_y { v.log10() } else { v };
    let best = history
        .iter()
        .filter(|m| m.best)
        .map(|m| m.epoch as f64)
        .next_back();
    let y_label = if log_y { "loss (log scale)" } else { "loss" };
    let term = |title: &str, f: fn(&crate::loss::LossValues) -> f64| {
        let curve =
            |label: &str, color, split: fn(&EpochMetrics) -> &crate::loss::LossValues| Curve {
                label: label.into(),
                points: history
                    .iter()
                    .map(|m| (m.epoch as f64, value(f(split(m)))))
                    .collect(),
                color,
            };
        Panel {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: y_label.into(),
            curves: vec![
                curve("train", BLUE, |m| &m.train),
                curve("val", ORANGE, |m| &m.val),
            ],
            marker: best.map(|b| (b, "best val epoch".to_string())),
            log_y,
        }
    };
    let panels = [
        term("total loss", |v| v.total),
        term("forecast (ŷ_ts vs y)", |v| v.forecast),
        term("reconstruction (ŷ_p vs y)", |v| v.recon),
        term("feature distillation", |v| v.feature),
        term("attention distillation", |v| v.att),
        Panel {
            title: "learning rate".into(),
            x_label: "epoch".into(),
            y_label: if log_y { "lr (log scale)" } else { "lr" }.into(),
            curves: vec![Curve {
                label: "lr".into(),
                points: history
                    .iter()
                    .map(|m| (m.epoch as f64, value(m.lr)))
                    .collect(),
                color: GREY,
            }],
            marker: None,
            log_y,
        },
    ];
    render(path, (1500, 900), |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((2, 3));
        for (area, panel) in areas.iter().zip(&panels) {
            draw_panel(area, panel)?;
        }
        Ok(())
    })
}

/// A forecast chart: history in blue at steps −L … −1, the truth (if known) in grey and the
/// forecast in red at steps 0 … H−1, and a dashed green line where the forecast starts.
pub fn plot_forecast(path: &Path, plot: &ForecastPlot<'_>) -> Result<()> {
    let l = plot.history.len() as f64;
    let history: Vec<(f64, f64)> = plot
        .history
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64 - l, *v))
        .collect();
    // Join the future curves to the last observed value.
    let future = |values: &[f64]| {
        let mut points: Vec<(f64, f64)> = history.last().copied().into_iter().collect();
        points.extend(values.iter().enumerate().map(|(i, v)| (i as f64, *v)));
        points
    };
    let mut curves = vec![Curve {
        label: "history".into(),
        points: history.clone(),
        color: BLUE,
    }];
    if let Some(truth) = plot.truth {
        curves.push(Curve {
            label: "ground truth".into(),
            points: future(truth),
            color: GREY,
        });
    }
    curves.push(Curve {
        label: "forecast".into(),
        points: future(plot.forecast),
        color: RED,
    });
    let panel = Panel {
        title: plot.title.clone(),
        x_label: "time step (0 = first forecast step)".into(),
        y_label: plot.variable.to_string(),
        curves,
        marker: Some((-0.5, "forecast start".into())),
        log_y: false,
    };
    render(path, (1200, 600), |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw_panel(root, &panel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of the PNG at `path` that are neither white nor a curve colour: text (anti-aliased
    /// glyphs are grey or black).
    fn dark_pixels(path: &Path) -> usize {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        buf.chunks(3)
            .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
            .count()
    }

    #[test]
    fn forecast_plots_carry_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.png");
        let history: Vec<f64> = (0..24).map(|i| (i as f64 / 3.0).sin()).collect();
        let forecast = [0.1, 0.2, 0.3];
        let plot = ForecastPlot {
            title: "OT: test window 0".into(),
            variable: "OT",
            history: &history,
            forecast: &forecast,
            truth: Some(&[0.0, 0.1, 0.5]),
        };
        plot_forecast(&path, &plot).unwrap();
        // Axis lines alone are a few thousand dark pixels; titles, ticks and the legend add
        // thousands more.
        assert!(dark_pixels(&path) > 5000, "{}", dark_pixels(&path));
    }
}
