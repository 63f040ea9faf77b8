//! The SVG of a simulation: the measured informed fraction per round beside the theory's.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// One curve: a label and its points (round, informed fraction).
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (for theory) or solid (for measurements).
    pub dashed: bool,
}

/// Draws `series` into an SVG at `path`, titled `title`.
pub fn draw(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).context("drawing the background")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..max_x, 0.0..1.02)
        .context("laying out the chart")?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("informed fraction")
        .draw()
        .context("drawing the axes")?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let style = ShapeStyle::from(&colour).stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(s.points.iter().copied(), style))
        };
        drawn
            .context("drawing a curve")?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .context("drawing the legend")?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
