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
use crate::train_config::Selection;

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
    crate::output::write_file(path, &bytes)
}

/// The data range of `panel`'s finite points, padded by 2% horizontally (a line at the first
/// or last x stays clear of the axis) and 5% vertically.
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
    let (x_pad, y_pad) = ((x1 - x0) * 0.02, ((y1 - y0) * 0.05).max(1e-9));
    (x0 - x_pad..x1 + x_pad, y0 - y_pad..y1 + y_pad)
}

/// A y tick label on an axis from `lo` to `hi`: as many decimals as ticks a tenth of the
/// range apart need (plotters draws at most ten labels an axis, so its step is at least
/// that); scientific notation, alike for the whole axis, where its values reach below 1e-3
/// or 1e4 up. On a log axis `v` is an exponent and the label its value, to three
/// significant figures.
fn tick_label(v: f64, (lo, hi): (f64, f64), log: bool) -> String {
    let digits = |x: f64| x.abs().log10().floor();
    let plain = |x: f64| (-3.0..4.0).contains(&digits(x));
    if log {
        let value = 10f64.powf(v);
        return match plain(10f64.powf(lo)) && plain(10f64.powf(hi)) {
            true => format!("{value:.*}", (2.0 - digits(value)).max(0.0) as usize),
            false => format!("{value:.2e}"),
        };
    }
    let step = ((hi - lo) / 10.0).max(f64::MIN_POSITIVE);
    let largest = lo.abs().max(hi.abs()).max(step);
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    match plain(largest) {
        true => format!("{v:.*}", (-digits(step)).max(0.0) as usize),
        false => format!(
            "{v:.*e}",
            (digits(largest) - digits(step)).max(0.0) as usize
        ),
    }
}

/// The corner of the plotting area that `panel`'s lines cross least (the upper right on a
/// tie), for the legend: points along every segment are counted in each corner's box, 35%
/// of the width by 30% of the height.
fn legend_corner(panel: &Panel, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> SeriesLabelPosition {
    let unit = |(x, y): (f64, f64)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
    let mut lines: Vec<Vec<(f64, f64)>> = panel
        .curves
        .iter()
        .map(|c| {
            c.points
                .iter()
                .copied()
                .filter(|(_, y)| y.is_finite())
                .collect()
        })
        .collect();
    if let Some((x, _)) = &panel.marker {
        lines.push(vec![(*x, y0), (*x, y1)]);
    }
    let samples: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|line| line.windows(2))
        .flat_map(|pair| {
            let ((ax, ay), (bx, by)) = (unit(pair[0]), unit(pair[1]));
            (0..=16).map(move |i| {
                let t = f64::from(i) / 16.0;
                (ax + t * (bx - ax), ay + t * (by - ay))
            })
        })
        .collect();
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let crossings = |right: bool, upper: bool| {
        let in_x = |x: f64| if right { x >= 0.65 } else { x <= 0.35 };
        let in_y = |y: f64| if upper { y >= 0.7 } else { y <= 0.3 };
        samples.iter().filter(|(x, y)| in_x(*x) && in_y(*y)).count()
    };
    corners
        .into_iter()
        .min_by_key(|(_, right, upper)| crossings(*right, *upper))
        .map_or(SeriesLabelPosition::UpperRight, |(corner, _, _)| corner)
}

/// Draws one chart of `panel` on `area`.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (xs, ys) = ranges(panel);
    let (x0, x1, y0, y1) = (xs.start, xs.end, ys.start, ys.end);
    let legend = legend_corner(panel, (x0, x1), (y0, y1));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(78)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| err(&e))?;
    let log_y = panel.log_y;
    let y_ticks = move |v: &f64| tick_label(*v, (y0, y1), log_y);
    // x is a step or an epoch: whole numbers, at most ten labels.
    let x_ticks = |v: &f64| format!("{:.0}", v + 0.0);
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_labels(((x1 - x0).floor() as usize + 1).min(10))
        .x_label_formatter(&x_ticks)
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
        .position(legend)
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
    let selection = history.last().map(|m| m.selection).unwrap_or_default();
    let marker = match selection {
        Selection::Val => "best val epoch".to_string(),
        Selection::Paper => "kept epoch (paper rule)".to_string(),
    };
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
            marker: best.map(|b| (b, marker.clone())),
            log_y,
        }
    };
    let panels = [
        term(
            &format!("total loss (checkpoint selection: {selection})"),
            |v| v.total,
        ),
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
    let panel = forecast_panel(plot);
    render(path, FORECAST_SIZE, |root| draw_chart(root, &panel))
}

/// The forecast chart's size in pixels.
const FORECAST_SIZE: (u32, u32) = (1200, 600);

/// `panel` alone on a white `root`.
fn draw_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    draw_panel(root, panel)
}

/// What [`plot_forecast`] draws.
fn forecast_panel(plot: &ForecastPlot<'_>) -> Panel {
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
    Panel {
        title: plot.title.clone(),
        x_label: "time step (0 = first forecast step)".into(),
        y_label: plot.variable.to_string(),
        curves,
        marker: Some((-0.5, "forecast start".into())),
        log_y: false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use plotters_backend::text_anchor::{HPos, VPos};
    use plotters_backend::{
        BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
    };
    use timekd_data::{Dataset, DatasetOptions, SplitKind};

    use super::*;

    type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    /// A string the chart drew and the pixels its glyphs cover (canvas coordinates; pixels
    /// off the canvas included).
    struct Drawn {
        text: String,
        /// Where the chart anchored it.
        anchor: BackendCoord,
        pixels: Vec<(i32, i32)>,
    }

    impl Drawn {
        /// The smallest rectangle holding every glyph pixel: (x0, y0, x1, y1), inclusive.
        fn bounds(&self) -> (i32, i32, i32, i32) {
            self.pixels.iter().fold(
                (i32::MAX, i32::MAX, i32::MIN, i32::MIN),
                |(x0, y0, x1, y1), &(x, y)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            )
        }
    }

    /// The bitmap backend with a record of every string drawn on it; text is drawn only when
    /// `text` is on. Every other call goes to the bitmap unchanged, so a render without text
    /// differs from the real one exactly where text is.
    struct TextProbe<'a> {
        bitmap: BitMapBackend<'a>,
        text: bool,
        drawn: &'a mut Vec<Drawn>,
    }

    fn font_error<E: std::error::Error + Send + Sync + 'static>(
        e: E,
    ) -> DrawingErrorKind<BitmapError> {
        DrawingErrorKind::FontError(Box::new(e))
    }

    impl DrawingBackend for TextProbe<'_> {
        type ErrorType = BitmapError;

        fn get_size(&self) -> (u32, u32) {
            self.bitmap.get_size()
        }
        fn ensure_prepared(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.ensure_prepared()
        }
        fn present(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.present()
        }
        fn draw_pixel(
            &mut self,
            point: BackendCoord,
            color: BackendColor,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.draw_pixel(point, color)
        }
        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.draw_line(from, to, style)
        }
        fn draw_rect<S: BackendStyle>(
            &mut self,
            upper_left: BackendCoord,
            bottom_right: BackendCoord,
            style: &S,
            fill: bool,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.draw_rect(upper_left, bottom_right, style, fill)
        }
        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            path: I,
            style: &S,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.draw_path(path, style)
        }
        fn draw_circle<S: BackendStyle>(
            &mut self,
            center: BackendCoord,
            radius: u32,
            style: &S,
            fill: bool,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.draw_circle(center, radius, style, fill)
        }
        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            vert: I,
            style: &S,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.fill_polygon(vert, style)
        }
        fn blit_bitmap(
            &mut self,
            pos: BackendCoord,
            size: (u32, u32),
            src: &[u8],
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            self.bitmap.blit_bitmap(pos, size, src)
        }
        fn estimate_text_size<S: BackendTextStyle>(
            &self,
            text: &str,
            style: &S,
        ) -> std::result::Result<(u32, u32), DrawingErrorKind<BitmapError>> {
            self.bitmap.estimate_text_size(text, style)
        }
        /// Records where each glyph pixel lands, placed as plotters' default `draw_text` (the
        /// bitmap's) places them: the layout box aligned on the anchor, then rotated.
        fn draw_text<S: BackendTextStyle>(
            &mut self,
            text: &str,
            style: &S,
            pos: BackendCoord,
        ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
            let ((x0, y0), (x1, y1)) = style.layout_box(text).map_err(font_error)?;
            let dx = match style.anchor().h_pos {
                HPos::Left => 0,
                HPos::Right => x0 - x1,
                HPos::Center => (x0 - x1) / 2,
            };
            let dy = match style.anchor().v_pos {
                VPos::Top => 0,
                VPos::Center => (y0 - y1) / 2,
                VPos::Bottom => y0 - y1,
            };
            let transform = style.transform();
            let mut pixels = Vec::new();
            style
                .draw(text, (0, 0), |x, y, color| {
                    if color.alpha > 0.0 {
                        let (x, y) = transform.transform(x + dx - x0, y + dy - y0);
                        pixels.push((pos.0 + x, pos.1 + y));
                    }
                    Ok::<(), DrawingErrorKind<BitmapError>>(())
                })
                .map_err(font_error)??;
            self.drawn.push(Drawn {
                text: text.to_string(),
                anchor: pos,
                pixels,
            });
            match self.text {
                true => self.bitmap.draw_text(text, style, pos),
                false => Ok(()),
            }
        }
    }

    /// `panel` drawn as [`plot_forecast`] draws it, with or without text: the RGB pixels and
    /// the strings drawn.
    fn probe(panel: &Panel, text: bool) -> (Vec<u8>, Vec<Drawn>) {
        register_font().unwrap();
        let (width, height) = FORECAST_SIZE;
        let mut rgb = vec![255u8; (width * height * 3) as usize];
        let mut drawn = Vec::new();
        {
            let probe = TextProbe {
                bitmap: BitMapBackend::with_buffer(&mut rgb, FORECAST_SIZE),
                text,
                drawn: &mut drawn,
            };
            let root = probe.into_drawing_area();
            draw_chart(&root, panel).unwrap();
            root.present().unwrap();
        }
        (rgb, drawn)
    }

    fn decode(path: &Path) -> Vec<u8> {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        buf
    }

    /// OT in ETTh1's first test window (L = 96, H = 24), forecast seasonal-naively (the
    /// history's last day again), as `timekd train` plots it.
    #[test]
    fn forecast_plots_draw_title_axes_ticks_and_legend_whole_and_apart() {
        let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ETTh1.csv");
        let options = DatasetOptions {
            output_len: 24,
            ..DatasetOptions::default()
        };
        let data = Dataset::load(&csv, &options).expect("datasets/ETTh1.csv");
        let ot = data.var_names().iter().position(|v| v == "OT").unwrap();
        let window = data.split(SplitKind::Test).window(0);
        let history = window.history_raw(ot);
        let forecast = &history[history.len() - 24..];
        let title = format!(
            "OT: test window 0 ({} to {}), H = 24",
            window.history_start().format("%Y-%m-%d %H:%M"),
            window.history_end().format("%Y-%m-%d %H:%M"),
        );
        let plot = ForecastPlot {
            title: title.clone(),
            variable: "OT",
            history,
            forecast,
            truth: Some(window.future_raw(ot)),
        };
        let panel = forecast_panel(&plot);
        let (with_text, drawn) = probe(&panel, true);
        let (without_text, _) = probe(&panel, false);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forecast.png");
        plot_forecast(&path, &plot).unwrap();
        assert!(decode(&path) == with_text, "the PNG is the probed render");

        let texts: Vec<&str> = drawn.iter().map(|d| d.text.as_str()).collect();
        for label in [
            title.as_str(),
            "time step (0 = first forecast step)",
            "OT",
            "history",
            "ground truth",
            "forecast",
            "forecast start",
        ] {
            assert!(texts.contains(&label), "`{label}` not drawn: {texts:?}");
        }

        // Tick labels: a row of x values (steps −96 … 23) sharing one anchor height, and a
        // column of y values (within the plotted values) sharing one anchor x.
        let mut rows: HashMap<i32, Vec<f64>> = HashMap::new();
        let mut columns: HashMap<i32, Vec<f64>> = HashMap::new();
        for d in &drawn {
            if let Ok(value) = d.text.parse::<f64>() {
                rows.entry(d.anchor.1).or_default().push(value);
                columns.entry(d.anchor.0).or_default().push(value);
            }
        }
        let longest = |groups: HashMap<i32, Vec<f64>>| {
            groups
                .into_values()
                .max_by_key(Vec::len)
                .unwrap_or_default()
        };
        let (x_ticks, y_ticks) = (longest(rows), longest(columns));
        assert!(x_ticks.len() >= 4, "x tick labels: {x_ticks:?}");
        assert!(
            x_ticks.iter().all(|x| (-96.0..=23.0).contains(x)),
            "{x_ticks:?}"
        );
        let plotted = history.iter().chain(forecast).chain(window.future_raw(ot));
        let (lo, hi) = plotted.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!(y_ticks.len() >= 4, "y tick labels: {y_ticks:?}");
        assert!(
            y_ticks.iter().all(|y| (lo..=hi).contains(y)),
            "{y_ticks:?} outside {lo} … {hi}"
        );

        // Every string lies whole on the canvas, apart from every other, and shows: most of
        // its glyph pixels differ from the render without text. Nothing but glyphs differs.
        let (width, height) = (FORECAST_SIZE.0 as i32, FORECAST_SIZE.1 as i32);
        let differs = |(x, y): (i32, i32)| {
            let i = 3 * (y * width + x) as usize;
            with_text[i..i + 3] != without_text[i..i + 3]
        };
        let glyphs: HashSet<(i32, i32)> = drawn
            .iter()
            .flat_map(|d| d.pixels.iter().copied())
            .collect();
        let changed: Vec<(i32, i32)> = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .filter(|&p| differs(p))
            .collect();
        assert!(changed.iter().all(|p| glyphs.contains(p)));
        for (i, d) in drawn.iter().enumerate() {
            let (x0, y0, x1, y1) = d.bounds();
            assert!(
                x0 >= 0 && y0 >= 0 && x1 < width && y1 < height,
                "`{}` is clipped: {:?}",
                d.text,
                d.bounds()
            );
            let shown = d.pixels.iter().filter(|&&p| differs(p)).count();
            assert!(
                2 * shown > d.pixels.len(),
                "`{}`: {shown} of {} glyph pixels show",
                d.text,
                d.pixels.len()
            );
            for other in &drawn[i + 1..] {
                let (a0, b0, a1, b1) = other.bounds();
                let apart = x1 < a0 || a1 < x0 || y1 < b0 || b1 < y0;
                assert!(apart, "`{}` overlaps `{}`", d.text, other.text);
            }
        }
    }
}
