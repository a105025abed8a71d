//! The drawing: a grid with a row per run and three panels a row (concurrency, requests a
//! minute, tokens a minute), on plotters' SVG backend.

use std::time::Duration;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Run, Timeline};

/// A panel's size in pixels.
const PANEL: (u32, u32) = (400, 210);
/// The title strip's height.
const TITLE: u32 = 64;
/// Rates are taken over the samples of the last second (a tenth of the longest run if
/// that is shorter, but at least two samples), so that a run paced at 20 requests a
/// second does not read as a saw-tooth of 0 and 2 every 100 ms.
const WINDOW: Duration = Duration::from_secs(1);

const LIMIT: RGBColor = RGBColor(31, 119, 180);
const IN_FLIGHT: RGBColor = RGBColor(255, 127, 14);
const RATE: RGBColor = RGBColor(44, 160, 44);
const REFUSED: RGBColor = RGBColor(214, 39, 40);
const SERVER: RGBColor = RGBColor(90, 90, 90);
const GRID: RGBColor = RGBColor(232, 232, 232);

type Error = Box<dyn std::error::Error>;

pub(super) fn svg(title: &str, runs: &[Run]) -> Result<String, Error> {
    let rows = u32::try_from(runs.len().max(1)).unwrap_or(u32::MAX);
    let size = (
        PANEL.0 * 3,
        TITLE.saturating_add(PANEL.1.saturating_mul(rows)),
    );
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        let (head, body) = root.split_vertically(TITLE);
        head.draw_text(title, &("sans-serif", 20).into_text_style(&head), (12, 8))?;
        // Every row on one time axis, so that a quicker run reads as a shorter one, and
        // one window for the rates, so that rows compare.
        let longest = runs
            .iter()
            .map(|run| run.timeline.duration())
            .max()
            .unwrap_or(Duration::ZERO);
        let every = runs
            .iter()
            .map(|run| run.timeline.every())
            .max()
            .unwrap_or(super::EVERY);
        let window = (longest / 10).max(every * 2).min(WINDOW.max(every * 2));
        key(&head, window)?;
        let end = longest.as_secs_f64().max(window.as_secs_f64());
        let panels = body.split_evenly((runs.len().max(1), 3));
        for (run, row) in runs.iter().zip(panels.chunks(3)) {
            concurrency(&row[0], run, end)?;
            let requests = Rates::of(&run.timeline, window, |r| r.requests);
            let refused = Rates::of(&run.timeline, window, |r| r.refused);
            let panel = Panel {
                label: &run.label,
                unit: "requests/min",
                limit: run.limits.requests_per_min,
                end,
            };
            panel.draw(&row[1], &requests, Some(&refused))?;
            let tokens = Rates::of(&run.timeline, window, |r| r.tokens);
            let panel = Panel {
                unit: "tokens/min",
                limit: run.limits.tokens_per_min,
                ..panel
            };
            panel.draw(&row[2], &tokens, None)?;
        }
        root.present()?;
    }
    Ok(out)
}

/// The key to every panel, under the title: one legend instead of fifteen over the data.
fn key(head: &DrawingArea<SVGBackend<'_>, Shift>, window: Duration) -> Result<(), Error> {
    let text = ("sans-serif", 13).into_text_style(head);
    let (mut x, y) = (12, 44);
    let mut entry = |head: &DrawingArea<SVGBackend<'_>, Shift>,
                     mark: &dyn Fn(i32) -> Result<(), Error>,
                     label: &str|
     -> Result<(), Error> {
        mark(x)?;
        head.draw_text(label, &text, (x + 26, y - 7))?;
        // About what a browser's sans-serif takes at 13 px (plotters' own estimate for SVG,
        // 0.7 em a character, is wider than any).
        x += 26 + (label.len() as i32) * 6 + 16;
        Ok(())
    };
    let line = |color: RGBColor, width: u32| {
        move |x: i32| -> Result<(), Error> {
            head.draw(&PathElement::new(
                [(x, y), (x + 20, y)],
                color.stroke_width(width),
            ))?;
            Ok(())
        }
    };
    entry(head, &line(LIMIT, 2), "concurrency limit")?;
    entry(head, &line(IN_FLIGHT, 1), "requests in flight")?;
    entry(head, &line(RATE, 1), "requests or tokens a minute")?;
    entry(
        head,
        &|x| {
            for dash in [0, 9, 18] {
                head.draw(&PathElement::new(
                    [(x + dash, y), (x + dash + 5, y)],
                    SERVER.stroke_width(1),
                ))?;
            }
            Ok(())
        },
        "the server's limit",
    )?;
    entry(
        head,
        &|x| {
            head.draw(&Cross::new((x + 10, y), 4, REFUSED.stroke_width(1)))?;
            Ok(())
        },
        "429s a minute",
    )?;
    let window = match window.as_millis() {
        1_000 => "second".to_owned(),
        ms => format!("{ms} ms"),
    };
    head.draw_text(
        &format!("rates: over the last {window}; a burst above 3x the limit is cut there"),
        &("sans-serif", 12).into_text_style(head).color(&SERVER),
        (x + 8, y - 6),
    )?;
    Ok(())
}

fn concurrency(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    run: &Run,
    end: f64,
) -> Result<(), Error> {
    let samples = run.timeline.samples();
    let seen = samples
        .iter()
        .map(|s| {
            let reading = &s.reading;
            reading
                .in_flight
                .unwrap_or(0)
                .max(reading.limit.unwrap_or(0))
        })
        .chain(run.limits.concurrency)
        .max()
        .unwrap_or(0);
    let top = (seen as f64 * 1.15).max(4.0);
    let caption = match run.limits.concurrency {
        Some(server) => format!("{}: at once (server: {server})", run.label),
        None => format!("{}: at once", run.label),
    };
    let mut chart = chart(area, &caption, end, top)?;
    mesh(&mut chart, end, "requests at once", &|v| format!("{v:.0}"))?;
    let at = |s: &super::Sample| s.at.as_secs_f64();
    let limits: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.reading.limit.map(|l| (at(s), (l as f64).min(top))))
        .collect();
    if !limits.is_empty() {
        chart.draw_series(LineSeries::new(limits, LIMIT.stroke_width(2)))?;
    }
    let in_flight: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.reading.in_flight.map(|n| (at(s), n as f64)))
        .collect();
    if !in_flight.is_empty() {
        chart.draw_series(LineSeries::new(in_flight, IN_FLIGHT))?;
    }
    if let Some(server) = run.limits.concurrency {
        server_line(&mut chart, server as f64, end)?;
    }
    Ok(())
}

/// A panel of a rate a minute against the server's limit.
#[derive(Clone, Copy)]
struct Panel<'a> {
    label: &'a str,
    unit: &'a str,
    limit: Option<f64>,
    end: f64,
}

impl Panel<'_> {
    fn draw(
        self,
        area: &DrawingArea<SVGBackend<'_>, Shift>,
        rates: &Rates,
        refused: Option<&Rates>,
    ) -> Result<(), Error> {
        let seen = rates.max();
        // A limit far above what the run used would flatten it: it is named, not drawn.
        let (top, drawn) = match self.limit {
            Some(limit) if seen > 0.0 && limit > 4.0 * seen => (seen, false),
            // A burst far above the limit (everything at once) is cut at three times it.
            Some(limit) => (seen.min(3.0 * limit).max(limit), true),
            None => (seen, false),
        };
        let top = (top * 1.15).max(1.0);
        let caption = match self.limit {
            Some(limit) if drawn => {
                format!("{}: {} (server: {})", self.label, self.unit, compact(limit))
            }
            Some(limit) => format!(
                "{}: {} (server: {}, off the scale)",
                self.label,
                self.unit,
                compact(limit)
            ),
            None => format!("{}: {}", self.label, self.unit),
        };
        let mut chart = chart(area, &caption, self.end, top)?;
        mesh(&mut chart, self.end, self.unit, &|v| compact(*v))?;
        chart.draw_series(LineSeries::new(
            rates.points.iter().map(|&(t, v)| (t, v.min(top))),
            RATE,
        ))?;
        if let Some(refused) = refused {
            chart.draw_series(
                refused
                    .points
                    .iter()
                    .filter(|&&(_, v)| v > 0.0)
                    .map(|&(t, v)| Cross::new((t, v.min(top)), 3, REFUSED.stroke_width(1))),
            )?;
        }
        if let Some(limit) = self.limit.filter(|_| drawn) {
            server_line(&mut chart, limit, self.end)?;
        }
        Ok(())
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    end: f64,
    top: f64,
) -> Result<Chart<'a, 'b>, Error> {
    Ok(ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 13))
        .margin(6)
        .x_label_area_size(32)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..end, 0.0..top)?)
}

fn mesh(
    chart: &mut Chart<'_, '_>,
    end: f64,
    unit: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<(), Error> {
    let x_label = |v: &f64| {
        if end >= 5.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(unit)
        .x_label_formatter(&x_label)
        .y_label_formatter(y_label)
        .x_labels(8)
        .y_labels(6)
        .label_style(("sans-serif", 11))
        .max_light_lines(0)
        .bold_line_style(GRID)
        .draw()?;
    Ok(())
}

fn server_line(chart: &mut Chart<'_, '_>, y: f64, end: f64) -> Result<(), Error> {
    chart.draw_series(DashedLineSeries::new(
        [(0.0, y), (end, y)],
        6,
        4,
        SERVER.stroke_width(1),
    ))?;
    Ok(())
}

/// `950`, `1.2k`, `36k`, `1.5M`.
fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A total's rate a minute at each sample: what it grew by over the last `window` (since
/// the start, within the first), per minute.
struct Rates {
    points: Vec<(f64, f64)>,
}

impl Rates {
    fn of(timeline: &Timeline, window: Duration, total: impl Fn(&super::Reading) -> u64) -> Self {
        let samples = timeline.samples();
        let mut points = Vec::with_capacity(samples.len());
        let mut from = 0;
        for (i, sample) in samples.iter().enumerate().skip(1) {
            while from + 1 < i && sample.at.saturating_sub(samples[from + 1].at) >= window {
                from += 1;
            }
            let first = &samples[from];
            // Over the last second, or since the start within the first: a ramp, not a
            // spike made of a burst over a few milliseconds.
            let span = sample.at.saturating_sub(first.at).max(window).as_secs_f64();
            let count = total(&sample.reading).saturating_sub(total(&first.reading));
            points.push((sample.at.as_secs_f64(), count as f64 * 60.0 / span));
        }
        Self { points }
    }

    fn max(&self) -> f64 {
        self.points.iter().map(|&(_, v)| v).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Reading;
    use super::*;

    #[test]
    fn a_rate_is_taken_over_the_last_second() {
        let mut timeline = Timeline::new(Duration::from_millis(100));
        // 2 requests every 100 ms: 20 a second, 1,200 a minute.
        for i in 0..30u32 {
            let reading = Reading {
                requests: u64::from(i) * 2,
                ..Reading::default()
            };
            timeline.push(Duration::from_millis(100) * i, reading);
        }
        let rates = Rates::of(&timeline, WINDOW, |r| r.requests);
        assert_eq!(rates.points.len(), 29);
        for &(t, v) in &rates.points {
            // A ramp over the first second (what it grew by, per second), then the rate.
            let expected = 1_200.0 * t.min(1.0);
            assert!((v - expected).abs() < 1e-6, "at {t}s: {v}, not {expected}");
        }
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(1_200.0), "1.2k");
        assert_eq!(compact(36_000.0), "36k");
        assert_eq!(compact(1_500_000.0), "1.5M");
    }
}
