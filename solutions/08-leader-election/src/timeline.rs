//! The simulator's timeline as an SVG: one row per node, coloured by role, grey while the node
//! is down or paused, with the faults marked.

use std::path::Path;

use plotters::prelude::*;

use crate::cluster::Report;
use crate::protocol::Role;

const LEADER: RGBColor = RGBColor(46, 160, 67);
const CANDIDATE: RGBColor = RGBColor(230, 140, 0);
const FOLLOWER: RGBColor = RGBColor(170, 200, 230);
const DOWN: RGBColor = RGBColor(200, 200, 200);
const FAULT: RGBColor = RGBColor(200, 30, 30);

/// Draws `report` for nodes `n0..n{nodes}` into `path`, titled `title`.
///
/// # Errors
/// When the file cannot be written.
pub fn draw(report: &Report, nodes: usize, path: &Path, title: &str) -> Result<(), String> {
    let secs = |ms: u64| ms.saturating_sub(report.start_ms) as f64 / 1000.0;
    let end = secs(report.end_ms).max(0.1);
    let height = 90 + 36 * nodes as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(36)
        .build_cartesian_2d(0f64..end, 0f64..nodes as f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(nodes)
        .y_label_formatter(&|y| format!("n{}", y.floor() as usize))
        .x_desc(
            "seconds since every node was up (green: leader, orange: candidate, blue: \
                 follower, grey: down or paused, red: a fault)",
        )
        .draw()
        .map_err(|e| e.to_string())?;
    let mut bars = Vec::new();
    for i in 0..nodes {
        let id = format!("n{i}");
        let down: Vec<(u64, u64)> = report.down.get(&id).cloned().unwrap_or_default();
        let events: Vec<_> = report.events.iter().filter(|e| e.node == id).collect();
        for (k, e) in events.iter().enumerate() {
            let mut to = events.get(k + 1).map_or(report.end_ms, |n| n.time_ms);
            if let Some(&(d0, _)) = down.iter().find(|(d0, _)| *d0 >= e.time_ms && *d0 < to) {
                to = d0;
            }
            let colour = match e.event {
                Role::Leader => LEADER,
                Role::Candidate => CANDIDATE,
                Role::Follower => FOLLOWER,
            };
            bars.push((i, secs(e.time_ms), secs(to), colour));
        }
        for (d0, d1) in down {
            bars.push((i, secs(d0), secs(d1), DOWN));
        }
    }
    chart
        .draw_series(bars.into_iter().map(|(i, x0, x1, colour)| {
            let y = i as f64;
            Rectangle::new(
                [(x0, y + 0.15), (x1.max(x0 + 0.005), y + 0.85)],
                colour.filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    for (at, _) in &report.faults {
        let x = secs(*at);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, nodes as f64)],
                FAULT.stroke_width(2),
            )))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
