//! Charts for the book: a comparison drawn as an SVG bar chart, our program beside the real
//! thing, one pair of bars per labelled row, with the ratio above each pair.
//!
//! Drawn with `plotters` and its SVG backend only: the SVG names a font family and the reader's
//! browser picks the font, so drawing needs no font file and no system library (plotters'
//! `ttf` feature, which would need fontconfig, is off; text is measured by its built-in
//! estimate). Every `cargo xtask compare <project> --svg FILE` calls [`draw`], so that a
//! re-measure redraws the chart the book shows.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One labelled pair of measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured, under its pair of bars (e.g. `SET`, `10 subs, 16 B`).
    pub label: String,
    /// Our program's figure.
    pub ours: f64,
    /// The real thing's figure, in the same unit.
    pub theirs: f64,
}

/// A comparison to draw.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The chart's title.
    pub title: String,
    /// The unit of the bars, on the vertical axis (e.g. `requests per second`).
    pub unit: String,
    /// The legend of our bars (e.g. `kv-store (solutions)`).
    pub ours: String,
    /// The legend of theirs (e.g. `redis-server`).
    pub theirs: String,
    /// The small print under the chart: the command and the date.
    pub note: String,
    /// The pairs, left to right.
    pub rows: Vec<Row>,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 400;
const OURS: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const THEIRS: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);

/// Draws `comparison` as an SVG file at `path`.
pub fn draw(comparison: &Comparison, path: &Path) -> Result<()> {
    let plot = |e| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot)?;
    let n = comparison.rows.len().max(1) as f64;
    let top = comparison
        .rows
        .iter()
        .flat_map(|r| [r.ours, r.theirs])
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.45;
    let mut chart = ChartBuilder::on(&root)
        .caption(&comparison.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(56)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(plot)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .x_labels(0)
        .light_line_style(TRANSPARENT)
        .y_desc(&comparison.unit)
        .y_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot)?;
    let bar = |i: usize, left: bool, value: f64| {
        let x = i as f64 + if left { 0.12 } else { 0.5 };
        let color = if left { OURS } else { THEIRS };
        Rectangle::new([(x, 0.0), (x + 0.38, value)], color.filled())
    };
    let rows = &comparison.rows;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| bar(i, true, r.ours)))
        .map_err(plot)?
        .label(&comparison.ours)
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], OURS.filled()));
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, false, r.theirs)),
        )
        .map_err(plot)?
        .label(&comparison.theirs)
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], THEIRS.filled()));
    let centred = ("sans-serif", 14)
        .into_font()
        .into_text_style(&root)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let ratio = if r.theirs > 0.0 {
                format!("{:.2}x", r.ours / r.theirs)
            } else {
                "-".to_owned()
            };
            Text::new(
                ratio,
                (i as f64 + 0.5, r.ours.max(r.theirs)),
                centred.clone(),
            )
        }))
        .map_err(plot)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot)?;
    let below = ("sans-serif", 14)
        .into_font()
        .into_text_style(&root)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, r) in rows.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(r.label.clone(), (x, y + 8), below.clone()))
            .map_err(plot)?;
    }
    root.draw(&Text::new(
        comparison.note.clone(),
        (12, HEIGHT as i32 - 20),
        ("sans-serif", 12).into_font().color(&BLACK.mix(0.6)),
    ))
    .map_err(plot)?;
    root.present().map_err(plot)?;
    Ok(())
}

/// Measured distributions to draw as cumulative curves, one per series: for each value on the
/// horizontal axis, the share of the samples at or below it.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// The chart's title.
    pub title: String,
    /// The unit of the values, on the horizontal axis (e.g. `milliseconds`).
    pub unit: String,
    /// The small print under the chart: the command and the date.
    pub note: String,
    /// Each series' legend and its samples, in any order.
    pub series: Vec<(String, Vec<f64>)>,
}

/// Draws `distribution` as an SVG file at `path`: one cumulative curve per series, our colour
/// first, then the others'.
pub fn draw_cdf(distribution: &Distribution, path: &Path) -> Result<()> {
    let plot = |e| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot)?;
    let right = distribution
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(&distribution.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(56)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..right, 0.0..100.0)
        .map_err(plot)?;
    chart
        .configure_mesh()
        .x_desc(&distribution.unit)
        .y_desc("% of samples at or below")
        .x_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot)?;
    let colours = [
        OURS,
        RGBColor(0xd0, 0x6a, 0x1a),
        RGBColor(0x3a, 0x9a, 0x4a),
        THEIRS,
    ];
    for (i, (label, values)) in distribution.series.iter().enumerate() {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        let colour = colours[i % colours.len()];
        let points = sorted
            .iter()
            .enumerate()
            .map(|(k, v)| (*v, 100.0 * (k + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot)?;
    root.draw(&Text::new(
        distribution.note.clone(),
        (12, HEIGHT as i32 - 20),
        ("sans-serif", 12).into_font().color(&BLACK.mix(0.6)),
    ))
    .map_err(plot)?;
    root.present().map_err(plot)?;
    Ok(())
}

/// `1234567` as `1.2M`, `2500` as `2.5k`: axis labels a reader takes in at a glance.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e9 => format!("{:.1}G", v / 1e9),
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

/// Today's date in UTC, `YYYY-MM-DD`, for a chart's note.
pub fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(1_234_567.0), "1.2M");
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(2_500.0), "2.5k");
        assert_eq!(short(583.0), "583");
    }

    #[test]
    fn draws_an_svg_with_its_labels() {
        let dir = std::env::temp_dir().join(format!("xtask-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.svg");
        let comparison = Comparison {
            title: "kv-store against redis-server".into(),
            unit: "requests per second".into(),
            ours: "kv-store".into(),
            theirs: "redis-server".into(),
            note: "measured 2025-12-01".into(),
            rows: vec![
                Row {
                    label: "SET".into(),
                    ours: 900_000.0,
                    theirs: 1_000_000.0,
                },
                Row {
                    label: "GET".into(),
                    ours: 1_100_000.0,
                    theirs: 1_000_000.0,
                },
            ],
        };
        draw(&comparison, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for text in [
            "<svg",
            "SET",
            "GET",
            "0.90x",
            "1.10x",
            "redis-server",
            "2025-12-01",
        ] {
            assert!(svg.contains(text), "the SVG lacks {text:?}");
        }
    }
}
