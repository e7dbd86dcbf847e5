//! PNG plots for the examples, drawn with `plotters` and the DejaVu Sans font embedded in
//! the binary (so plots need no system fonts).
#![allow(dead_code)] // each example binary uses a different part of the shared module

use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// What a plotting call can fail with.
pub type PlotResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One named line of a plot.
pub struct Series<'a> {
    /// The legend entry.
    pub name: &'a str,
    /// The points, in drawing order.
    pub points: &'a [(f64, f64)],
}

/// How a line plot is laid out.
pub struct LinePlot<'a> {
    /// The title above the plot.
    pub title: &'a str,
    /// The x axis's label.
    pub x_label: &'a str,
    /// The y axis's label.
    pub y_label: &'a str,
    /// A logarithmic y axis (for loss curves).
    pub log_y: bool,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registration only fails on a malformed font, and the embedded one is fixed.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn err<E: std::fmt::Display>(e: E) -> Box<dyn std::error::Error + Send + Sync> {
    e.to_string().into()
}

/// The range covering `values` (finite ones only), widened when they are all equal.
fn span(values: impl Iterator<Item = f64>, positive_only: bool) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!positive_only || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return None;
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

/// Draws `series` as lines into a PNG at `path` (640×480). Non-finite points are skipped
/// (and non-positive ones on a log axis), so a diverging run still plots.
pub fn line_plot(path: &Path, layout: &LinePlot<'_>, series: &[Series<'_>]) -> PlotResult<()> {
    register_font();
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let (x0, x1) = span(all().map(|p| p.0), false).ok_or("nothing to plot")?;
    let (y0, y1) = span(all().map(|p| p.1), layout.log_y).ok_or("nothing to plot")?;
    let root = BitMapBackend::new(path, (640, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(layout.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    let keep = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!layout.log_y || p.1 > 0.0);
    if layout.log_y {
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(layout.x_label)
            .y_desc(layout.y_label)
            .y_label_formatter(&|v| {
                if (1e-3..1e4).contains(&v.abs()) {
                    format!("{v:.3}")
                } else {
                    format!("{v:.1e}")
                }
            })
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied().filter(keep),
                    color,
                ))
                .map_err(err)?
                .label(s.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(layout.x_label)
            .y_desc(layout.y_label)
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied().filter(keep),
                    color,
                ))
                .map_err(err)?
                .label(s.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Plots per-batch `losses` (averaged over windows of 1/100 of the run, so the curve stays
/// readable) against epochs, on a log scale, into a PNG at `path`.
pub fn plot_batch_losses(
    path: &Path,
    title: &str,
    losses: &[f64],
    batches_per_epoch: usize,
) -> PlotResult<()> {
    let window = (losses.len() / 100).max(1);
    let per_epoch = batches_per_epoch.max(1) as f64;
    let points: Vec<(f64, f64)> = losses
        .chunks(window)
        .enumerate()
        .map(|(i, c)| {
            let x = (i * window + c.len()) as f64 / per_epoch;
            (x, c.iter().sum::<f64>() / c.len() as f64)
        })
        .collect();
    line_plot(
        path,
        &LinePlot {
            title,
            x_label: "epoch",
            y_label: "training loss",
            log_y: true,
        },
        &[Series {
            name: "training loss",
            points: &points,
        }],
    )
}

/// Draws the points of `groups` as coloured dots (a scatter plot, one colour per group) into a
/// PNG at `path`, with optional `lines` (such as a decision boundary) on top.
pub fn scatter_plot(
    path: &Path,
    layout: &LinePlot<'_>,
    groups: &[Series<'_>],
    lines: &[Series<'_>],
) -> PlotResult<()> {
    register_font();
    let all = || groups.iter().flat_map(|s| s.points.iter().copied());
    let (x0, x1) = span(all().map(|p| p.0), false).ok_or("nothing to plot")?;
    let (y0, y1) = span(all().map(|p| p.1), false).ok_or("nothing to plot")?;
    let root = BitMapBackend::new(path, (640, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(layout.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(layout.x_label)
        .y_desc(layout.y_label)
        .draw()
        .map_err(err)?;
    for (i, g) in groups.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(
                g.points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?
            .label(g.name)
            .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.filled()));
    }
    for (i, l) in lines.iter().enumerate() {
        let color = PALETTE[(groups.len() + i) % PALETTE.len()];
        let inside = |p: &(f64, f64)| p.1 >= y0 && p.1 <= y1 && p.0.is_finite();
        chart
            .draw_series(LineSeries::new(
                l.points.iter().copied().filter(inside),
                color,
            ))
            .map_err(err)?
            .label(l.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Draws grey-scale images (each `height × width` values, larger = darker when `ink` is set,
/// as MNIST digits are usually shown) in a grid of `columns`, each cell `scale` pixels per
/// image pixel, with an optional caption under each image.
pub fn image_grid(
    path: &Path,
    images: &[Vec<f32>],
    (height, width): (usize, usize),
    columns: usize,
    captions: &[String],
) -> PlotResult<()> {
    register_font();
    if images.is_empty() || columns == 0 || height == 0 || width == 0 {
        return Err("image_grid: nothing to draw".into());
    }
    if let Some(bad) = images.iter().position(|im| im.len() != height * width) {
        return Err(format!(
            "image_grid: image {bad} has {} values, not {height}×{width}",
            images[bad].len()
        )
        .into());
    }
    let scale = 4u32;
    let caption_h = if captions.is_empty() { 0 } else { 18 };
    let rows = images.len().div_ceil(columns);
    let cell_w = width as u32 * scale + 8;
    let cell_h = height as u32 * scale + 8 + caption_h;
    let root = BitMapBackend::new(path, (cell_w * columns as u32, cell_h * rows as u32))
        .into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (k, image) in images.iter().enumerate() {
        let (lo, hi) = span(image.iter().map(|&v| v as f64), false).unwrap_or((0.0, 1.0));
        let ox = (k % columns) as i32 * cell_w as i32 + 4;
        let oy = (k / columns) as i32 * cell_h as i32 + 4;
        for r in 0..height {
            for c in 0..width {
                let v = image[r * width + c] as f64;
                let t = if v.is_finite() {
                    (v - lo) / (hi - lo)
                } else {
                    0.0
                };
                let shade = (255.0 * (1.0 - t.clamp(0.0, 1.0))) as u8;
                let x = ox + (c as u32 * scale) as i32;
                let y = oy + (r as u32 * scale) as i32;
                root.draw(&Rectangle::new(
                    [(x, y), (x + scale as i32, y + scale as i32)],
                    RGBColor(shade, shade, shade).filled(),
                ))
                .map_err(err)?;
            }
        }
        if let Some(text) = captions.get(k) {
            root.draw(&Text::new(
                text.clone(),
                (ox, oy + (height as u32 * scale) as i32 + 2),
                ("sans-serif", 14),
            ))
            .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
