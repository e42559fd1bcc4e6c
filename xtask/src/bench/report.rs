//! The results: one Markdown table with both systems and the ratios, and an SVG plot.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::load::{LoadResult, Workload};
use super::scenarios::{BigDb, FailoverSample};

/// Everything measured on one system.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Each workload's result, in the order run.
    pub workloads: Vec<(Workload, LoadResult)>,
    /// Each failover repetition.
    pub failovers: Vec<FailoverSample>,
    /// Catch-up time, s.
    pub catch_up_s: Option<f64>,
    /// RSS of each node of an idle fresh ensemble, MiB.
    pub idle_rss_mib: Vec<f64>,
    /// The big-database phase.
    pub big: Option<BigDb>,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// When it ran (UTC, as `date -u` prints it).
    pub date: String,
    /// A line about the machine.
    pub machine: String,
    /// Seconds each workload was measured.
    pub duration_s: u64,
    /// Txns written while a follower was down.
    pub catch_up_txns: u64,
    /// Znodes of the big-database phase.
    pub znodes: u64,
    /// Our measurements.
    pub ours: Measured,
    /// Apache ZooKeeper's, with `--against apache`.
    pub apache: Option<Measured>,
    /// Steps that failed, with their error.
    pub failures: Vec<String>,
}

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(mid).copied()
    } else {
        Some((v.get(mid - 1)? + v.get(mid)?) / 2.0)
    }
}

fn max(values: &[f64]) -> Option<f64> {
    values
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .max_by(f64::total_cmp)
}

/// `ours / theirs` to two decimals, or `–`.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if t > 0.0 && o.is_finite() && t.is_finite() => format!("{:.2}", o / t),
        _ => "–".into(),
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".into(),
    }
}

/// What the issue asks of a measure: ours/Apache at least or at most a factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bar {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

impl Bar {
    fn check(self, ours: Option<f64>, theirs: Option<f64>) -> String {
        let (Some(o), Some(t)) = (ours, theirs) else {
            return "–".into();
        };
        if !(o.is_finite() && t.is_finite()) || t <= 0.0 {
            return "–".into();
        }
        let r = o / t;
        match self {
            Bar::AtLeast(x) => format!("≥ {x}×: {}", if r >= x { "met" } else { "not met" }),
            Bar::AtMost(x) => format!("≤ {x}×: {}", if r <= x { "met" } else { "not met" }),
        }
    }
}

/// The bar for a workload's throughput.
fn throughput_bar(w: &Workload) -> Option<Bar> {
    if w.sessions == 1 {
        return None;
    }
    Some(if w.mix.is_write() {
        Bar::AtLeast(2.0)
    } else {
        Bar::AtLeast(1.5)
    })
}

fn find(m: &Measured, w: &Workload) -> Option<LoadResult> {
    m.workloads.iter().find(|(x, _)| x == w).map(|(_, r)| *r)
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let empty = Measured::default();
        let apache = self.apache.as_ref().unwrap_or(&empty);
        let _ = writeln!(s, "# Benchmarks: ours vs Apache ZooKeeper 3.8\n");
        let _ = writeln!(
            s,
            "`{}` on {} ({}). Both systems ran as 3-node ensembles on 127.0.0.1-3 with the \
             same zoo.cfg (forceSync=yes), one system at a time per measurement, alternating; \
             the load generator (the project's pipelined client, release build) shared the \
             machine with them. Each workload ran {} s after a 1 s warm-up; values are 100 B. \
             The machine is shared and noisy: ratios from one run carry an error of ±10–20 %.\n",
            self.command, self.date, self.machine, self.duration_s
        );
        let _ = writeln!(s, "## Throughput and latency\n");
        let _ = writeln!(
            s,
            "| workload (sessions×in flight) | ours ops/s | Apache ops/s | ours/Apache | bar | \
             ours p50 / p99 / p99.9 ms | Apache p50 / p99 / p99.9 ms | p99 ours/Apache | p99 bar |"
        );
        let _ = writeln!(s, "|---|--:|--:|--:|---|--:|--:|--:|---|");
        let lat = |r: Option<LoadResult>| match r {
            Some(r) => format!(
                "{} / {} / {}",
                num(Some(r.p50_us / 1000.0), 2),
                num(Some(r.p99_us / 1000.0), 2),
                num(Some(r.p999_us / 1000.0), 2)
            ),
            None => "–".into(),
        };
        for (w, o) in &self.ours.workloads {
            let a = find(apache, w);
            let (oo, ao) = (Some(o.ops_per_s), a.map(|r| r.ops_per_s));
            let (op, ap) = (Some(o.p99_us), a.map(|r| r.p99_us));
            let p99_bar = if w.mix.is_write() {
                Bar::AtMost(0.5).check(op, ap)
            } else {
                "–".into()
            };
            let errors = |r: Option<LoadResult>| match r {
                Some(r) if r.errors > 0 => format!(" ({} errors)", r.errors),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {}{} | {}{} | {} | {} | {} | {} | {} | {} |",
                w.label(),
                num(oo, 0),
                errors(Some(*o)),
                num(ao, 0),
                errors(a),
                ratio(oo, ao),
                throughput_bar(w).map_or("–".into(), |b| b.check(oo, ao)),
                lat(Some(*o)),
                lat(a),
                ratio(op, ap),
                p99_bar
            );
        }
        let _ = writeln!(s, "\n## Failover, catch-up, restart, footprint\n");
        let _ = writeln!(s, "| measure | ours | Apache | ours/Apache | bar |");
        let _ = writeln!(s, "|---|--:|--:|--:|---|");
        let mut row = |name: String, o: Option<f64>, a: Option<f64>, d: usize, bar: Option<Bar>| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                num(o, d),
                num(a, d),
                ratio(o, a),
                bar.map_or("–".into(), |b| b.check(o, a))
            );
        };
        let fw = |m: &Measured| m.failovers.iter().map(|f| f.write_ms).collect::<Vec<_>>();
        let fl = |m: &Measured| m.failovers.iter().map(|f| f.leader_ms).collect::<Vec<_>>();
        let reps = self.ours.failovers.len();
        row(
            format!("failover: kill -9 leader → first write ok, median of {reps}, ms"),
            median(&fw(&self.ours)),
            median(&fw(apache)),
            0,
            Some(Bar::AtMost(0.5)),
        );
        row(
            "failover: → first write ok, max, ms".into(),
            max(&fw(&self.ours)),
            max(&fw(apache)),
            0,
            None,
        );
        row(
            "failover: → new leader reported, median, ms".into(),
            median(&fl(&self.ours)),
            median(&fl(apache)),
            0,
            None,
        );
        row(
            "failover: → new leader reported, max, ms".into(),
            max(&fl(&self.ours)),
            max(&fl(apache)),
            0,
            None,
        );
        row(
            format!(
                "catch-up: follower start → leader's zxid after {} txns, s",
                self.catch_up_txns
            ),
            self.ours.catch_up_s,
            apache.catch_up_s,
            2,
            Some(Bar::AtMost(0.5)),
        );
        let big = |m: &Measured, f: fn(&BigDb) -> f64| m.big.as_ref().map(f);
        row(
            format!(
                "restart with {} znodes: start → serving as follower, s",
                self.znodes
            ),
            big(&self.ours, |b| b.serve_s),
            big(apache, |b| b.serve_s),
            2,
            None,
        );
        row(
            format!(
                "restart with {} znodes: start → leader's zxid, s",
                self.znodes
            ),
            big(&self.ours, |b| b.synced_s),
            big(apache, |b| b.synced_s),
            2,
            None,
        );
        row(
            "RSS per node, idle (max of 3), MiB".into(),
            max(&self.ours.idle_rss_mib),
            max(&apache.idle_rss_mib),
            0,
            Some(Bar::AtMost(0.2)),
        );
        let rss = |m: &Measured| m.big.as_ref().and_then(|b| max(&b.rss_mib));
        row(
            format!("RSS per node with {} znodes (max of 3), MiB", self.znodes),
            rss(&self.ours),
            rss(apache),
            0,
            Some(Bar::AtMost(0.2)),
        );
        if !self.ours.failovers.is_empty() {
            let list = |m: &Measured| {
                m.failovers
                    .iter()
                    .map(|f| format!("{:.0}/{:.0}", f.write_ms, f.leader_ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                s,
                "\nFailover repetitions (first write ok / new leader, ms): ours {}; Apache {}.",
                list(&self.ours),
                list(apache)
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\n## Steps that failed\n");
            for f in &self.failures {
                let _ = writeln!(s, "* {f}");
            }
        }
        s
    }

    /// Draws throughput and p99 latency per workload, both systems, as an SVG.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let labels: Vec<(String, String)> = self
            .ours
            .workloads
            .iter()
            .map(|(w, _)| {
                (
                    w.mix.name().to_owned(),
                    format!("{}×{}", w.sessions, w.in_flight),
                )
            })
            .collect();
        let empty = Measured::default();
        let apache = self.apache.as_ref().unwrap_or(&empty);
        let pick = |f: fn(&LoadResult) -> f64| -> Vec<Pair> {
            self.ours
                .workloads
                .iter()
                .map(|(w, o)| (Some(f(o)), find(apache, w).map(|a| f(&a))))
                .collect()
        };
        let throughput = pick(|r| r.ops_per_s);
        let p99 = pick(|r| r.p99_us / 1000.0);
        let root = SVGBackend::new(path, (1400, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (left, right) = root.split_horizontally(700);
        panel(
            &root,
            &left,
            "throughput, ops/s (log scale)",
            &labels,
            &throughput,
        )?;
        panel(&root, &right, "p99 latency, ms (log scale)", &labels, &p99)?;
        root.present().map_err(plot_err)?;
        Ok(())
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// A value of ours and one of Apache's, when measured.
type Pair = (Option<f64>, Option<f64>);

const OURS_COLOR: RGBColor = RGBColor(31, 119, 180);
const APACHE_COLOR: RGBColor = RGBColor(214, 39, 40);

/// One log-scale grouped bar chart: per workload a bar for ours and one for Apache.
fn panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    labels: &[(String, String)],
    values: &[Pair],
) -> Result<()> {
    let all: Vec<f64> = values
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .flatten()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if all.is_empty() {
        (0.1, 10.0)
    } else {
        (lo / 2.0, hi * 2.0)
    };
    let n = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| {
            if *v >= 1000.0 {
                format!("{:.0}k", v / 1000.0)
            } else if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()
        .map_err(plot_err)?;
    let bars = |pick: fn(&Pair) -> Option<f64>, offset: f64, color| {
        values
            .iter()
            .enumerate()
            .filter_map(move |(i, v)| pick(v).map(|y| (i, y)))
            .filter(|(_, y)| y.is_finite() && *y > 0.0)
            .map(move |(i, y)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, lo), (x + 0.35, y)], ShapeStyle::from(color).filled())
            })
    };
    chart
        .draw_series(bars(|v| v.0, 0.12, OURS_COLOR))
        .map_err(plot_err)?
        .label("ours")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], OURS_COLOR.filled()));
    chart
        .draw_series(bars(|v| v.1, 0.53, APACHE_COLOR))
        .map_err(plot_err)?
        .label("Apache ZooKeeper 3.8")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], APACHE_COLOR.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    // Workload names under each group, in backend pixels.
    let style = ("sans-serif", 12).into_font().color(&BLACK);
    for (i, (mix, shape)) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.15, lo));
        root.draw(&Text::new(mix.clone(), (px, py + 6), style.clone()))
            .map_err(plot_err)?;
        root.draw(&Text::new(shape.clone(), (px, py + 20), style.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::Mix;

    fn result(ops: f64, p99_us: f64) -> LoadResult {
        LoadResult {
            ops: 100,
            errors: 0,
            ops_per_s: ops,
            p50_us: p99_us / 2.0,
            p99_us,
            p999_us: p99_us * 2.0,
        }
    }

    fn sample() -> Report {
        let w = Workload {
            mix: Mix::Set,
            sessions: 16,
            in_flight: 16,
        };
        let r = Workload {
            mix: Mix::Get,
            sessions: 16,
            in_flight: 16,
        };
        let ours = Measured {
            workloads: vec![(w, result(30_000.0, 2_000.0)), (r, result(60_000.0, 500.0))],
            failovers: vec![FailoverSample {
                write_ms: 300.0,
                leader_ms: 250.0,
            }],
            catch_up_s: Some(1.0),
            idle_rss_mib: vec![10.0, 12.0, 11.0],
            big: None,
        };
        let apache = Measured {
            workloads: vec![(w, result(10_000.0, 8_000.0)), (r, result(50_000.0, 400.0))],
            failovers: vec![FailoverSample {
                write_ms: 1200.0,
                leader_ms: 900.0,
            }],
            catch_up_s: None,
            idle_rss_mib: vec![100.0, 120.0, 110.0],
            big: None,
        };
        Report {
            command: "cargo xtask bench --quick".into(),
            date: "today".into(),
            machine: "2 cores".into(),
            duration_s: 5,
            catch_up_txns: 10,
            znodes: 20,
            ours,
            apache: Some(apache),
            failures: vec!["catch-up (apache): timed out".into()],
        }
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50");
        assert_eq!(ratio(Some(3.0), Some(0.0)), "–");
        assert_eq!(ratio(None, Some(2.0)), "–");
        assert_eq!(Bar::AtLeast(2.0).check(Some(3.0), Some(1.0)), "≥ 2×: met");
        assert_eq!(
            Bar::AtMost(0.5).check(Some(3.0), Some(1.0)),
            "≤ 0.5×: not met"
        );
    }

    #[test]
    fn markdown_has_both_systems_ratios_and_bars() {
        let md = sample().markdown();
        assert!(
            md.contains("| setData 16×16 | 30000 | 10000 | 3.00 | ≥ 2×: met | 1.00 / 2.00 / 4.00 | 4.00 / 8.00 / 16.00 | 0.25 | ≤ 0.5×: met |"),
            "{md}"
        );
        assert!(
            md.contains("| getData 16×16 | 60000 | 50000 | 1.20 | ≥ 1.5×: not met |"),
            "{md}"
        );
        assert!(
            md.contains("median of 1, ms | 300 | 1200 | 0.25 | ≤ 0.5×: met |"),
            "{md}"
        );
        assert!(
            md.contains("| RSS per node, idle (max of 3), MiB | 12 | 120 | 0.10 | ≤ 0.2×: met |"),
            "{md}"
        );
        assert!(md.contains("after 10 txns, s | 1.00 | – | – | – |"), "{md}");
        assert!(md.contains("* catch-up (apache): timed out"), "{md}");
    }

    #[test]
    fn plot_writes_an_svg_with_both_series() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        sample().plot(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for text in [
            "ours",
            "Apache ZooKeeper 3.8",
            "setData",
            "16×16",
            "throughput",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Two workloads × two systems × two panels, plus legend swatches.
        assert!(svg.matches("fill=\"#1F77B4\"").count() >= 4, "{svg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
