//! The end-to-end plot: plain SVG text, two panels sharing a log-scale x axis in microseconds.

use std::fmt::Write;

use crate::e2e::Route;

/// Escapes text for SVG.
pub(crate) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Ticks of a log axis from `lo` to `hi`: (value, labelled). Every 1..9 x 10^k is a grid line;
/// 1, 2 and 5 are labelled (only 1 beyond three decades).
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, bool)> {
    let labelled: &[u32] = if (hi / lo).log10() <= 3.0 {
        &[1, 2, 5]
    } else {
        &[1]
    };
    let mut ticks = Vec::new();
    let mut e = lo.log10().floor() as i32;
    while 10f64.powi(e) <= hi * 1.0001 {
        for m in 1..10u32 {
            let v = m as f64 * 10f64.powi(e);
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                ticks.push((v, labelled.contains(&m)));
            }
        }
        e += 1;
    }
    ticks
}

/// A tick label for a microsecond value on the log axis (1-2-5 values).
pub(crate) fn tick_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} ms", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A measured value in microseconds, for labels.
pub(crate) fn us_text(v: f64) -> String {
    format!("{v:.1} &#181;s")
}

/// Nearest-rank median of samples (any order); 0 when empty.
pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len().div_ceil(2)).max(1) - 1]
}

/// A "nice" step for a linear axis up to `max` with about `n` ticks.
pub(crate) fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// What a plot shows, besides its samples.
pub(crate) struct Labels<'a> {
    /// The title.
    pub(crate) title: &'a str,
    /// Two lines under the title: what is measured, from and to which clock.
    pub(crate) what: [&'a str; 2],
    /// The x axis: what the latency is (`"submit &#8594; relay receipt"`).
    pub(crate) axis: &'a str,
}

const W: f64 = 960.0;
const H: f64 = 760.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const PLOT_W: f64 = W - LEFT - RIGHT;
const CDF: (f64, f64) = (110.0, 300.0);
const HIST: (f64, f64) = (480.0, 200.0);
/// Histogram bins, log-spaced.
const BINS: usize = 40;

/// The x axis shared by both panels: log scale from `lo` to `hi` microseconds.
struct Axis {
    lo: f64,
    hi: f64,
}

impl Axis {
    /// The range of every sample, with a little room each side, snapped to 1-2-5 values.
    fn of(data: &[(Route, Vec<f64>)]) -> Axis {
        let all = data.iter().flat_map(|(_, v)| v.iter().copied());
        let (min, max) = all.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let min = min.max(0.1);
        let max = max.max(min * 1.5);
        let snap_down = |v: f64| {
            let e = 10f64.powf(v.log10().floor());
            [5.0, 2.0, 1.0]
                .into_iter()
                .map(|m| m * e)
                .find(|&t| t <= v)
                .unwrap_or(e)
        };
        let snap_up = |v: f64| {
            let e = 10f64.powf(v.log10().floor());
            [1.0, 2.0, 5.0, 10.0]
                .into_iter()
                .map(|m| m * e)
                .find(|&t| t >= v)
                .unwrap_or(10.0 * e)
        };
        Axis {
            lo: snap_down(min / 1.1),
            hi: snap_up(max * 1.1),
        }
    }

    /// Where `v` (us) is horizontally.
    fn x(&self, v: f64) -> f64 {
        LEFT + self.fraction(v) * PLOT_W
    }

    fn fraction(&self, v: f64) -> f64 {
        (v.max(self.lo).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
    }
}

/// Where fraction `f` of a CDF is vertically.
fn cdf_y(f: f64) -> f64 {
    CDF.0 + CDF.1 - f * CDF.1
}

/// The report's SVG: a CDF panel (one polyline per path) over a histogram panel, both with the
/// same log x axis in microseconds, medians marked, a legend and a note on the paths.
pub(crate) fn svg(labels: &Labels<'_>, data: &[(Route, Vec<f64>)]) -> String {
    let axis = Axis::of(data);
    let mut s = String::new();
    header(&mut s, labels);
    grid(&mut s, &axis, labels.axis);
    cdf(&mut s, &axis, data);
    medians(&mut s, &axis, data);
    legend(&mut s, data);
    histogram(&mut s, &axis, data);
    s.push_str("</svg>\n");
    s
}

fn header(s: &mut String, labels: &Labels<'_>) {
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="13">
<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>
<text x="{cx}" y="30" text-anchor="middle" font-size="18" font-weight="bold">{t}</text>
<text x="{cx}" y="52" text-anchor="middle" font-size="12" fill="#444">{w0}</text>
<text x="{cx}" y="70" text-anchor="middle" font-size="12" fill="#444">{w1}</text>
"##,
        cx = W / 2.0,
        t = xml(labels.title),
        w0 = xml(labels.what[0]),
        w1 = xml(labels.what[1]),
    );
}

/// Both panels' frames, the shared x grid and its labels.
fn grid(s: &mut String, axis: &Axis, label: &str) {
    let ticks = log_ticks(axis.lo, axis.hi);
    for (top, h) in [CDF, HIST] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{PLOT_W}" height="{h}" fill="#fafafa" stroke="#999"/>"##
        );
        for &(v, labelled) in &ticks {
            let px = axis.x(v);
            let (colour, width) = if labelled {
                ("#cfcfcf", 1.0)
            } else {
                ("#ececec", 0.7)
            };
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{y2}" stroke="{colour}" stroke-width="{width}"/>"##,
                y2 = top + h
            );
            if labelled {
                let _ = writeln!(
                    s,
                    r##"<text x="{px:.1}" y="{ty}" text-anchor="middle" font-size="12">{}</text>"##,
                    tick_label(v),
                    ty = top + h + 17.0
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="{cx}" y="{ty}" text-anchor="middle" font-size="13">latency, {label} (&#181;s, log scale)</text>"##,
            cx = LEFT + PLOT_W / 2.0,
            ty = top + h + 36.0
        );
    }
}

/// The CDF panel: its y grid and one step polyline per path.
fn cdf(s: &mut String, axis: &Axis, data: &[(Route, Vec<f64>)]) {
    for p in (0..=10).map(|i| i as f64 / 10.0) {
        let py = cdf_y(p);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12">{pc:.0}%</text>"##,
            x2 = LEFT + PLOT_W,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            pc = p * 100.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="22" y="{ty}" text-anchor="middle" transform="rotate(-90 22 {ty})">cumulative fraction of requests</text>"##,
        ty = CDF.0 + CDF.1 / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{ty}" font-size="14" font-weight="bold">CDF</text>"##,
        ty = CDF.0 - 8.0
    );
    for (route, v) in data {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mut pts = String::new();
        for (i, &val) in sorted.iter().enumerate() {
            let px = axis.x(val);
            let _ = write!(
                pts,
                "{px:.1},{:.1} {px:.1},{:.1} ",
                cdf_y(i as f64 / n),
                cdf_y((i + 1) as f64 / n)
            );
        }
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{c}" stroke-width="2.2" stroke-linejoin="round" points="{p}"/>"##,
            c = route.colour(),
            p = pts.trim_end()
        );
    }
}

/// Medians: dashed lines down through both panels, labelled in the CDF.
fn medians(s: &mut String, axis: &Axis, data: &[(Route, Vec<f64>)]) {
    // Left of a CDF's median and above 50 % is empty for every curve right of it, so the
    // leftmost median is labelled there; the others right of their line, below 50 %.
    let leftmost = data
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(_, v)| median(v))
        .fold(f64::MAX, f64::min);
    for (k, (route, v)) in data.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let med = median(v);
        let px = axis.x(med);
        for (top, h) in [CDF, HIST] {
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{y2}" stroke="{c}" stroke-width="1.2" stroke-dasharray="5,4"/>"##,
                c = route.colour(),
                y2 = top + h
            );
        }
        let (anchor, dx, ty) = if med <= leftmost {
            ("end", -6.0, cdf_y(0.5) - 8.0)
        } else {
            ("start", 6.0, cdf_y(0.5) + 16.0 + 16.0 * k as f64)
        };
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-size="12" fill="{c}" font-weight="bold" stroke="#ffffff" stroke-width="3" paint-order="stroke">p50 {m}</text>"##,
            tx = px + dx,
            c = route.colour(),
            m = us_text(med)
        );
    }
}

/// The legend: bottom right of the CDF panel, which a CDF never reaches.
fn legend(s: &mut String, data: &[(Route, Vec<f64>)]) {
    let (lw, lh) = (600.0, 14.0 + 20.0 * data.len() as f64);
    let (lx, ly) = (LEFT + PLOT_W - lw - 10.0, CDF.0 + CDF.1 - lh - 10.0);
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" fill="#ffffff" fill-opacity="0.92" stroke="#bbb"/>"##
    );
    let quic = data.iter().any(|(r, _)| *r == Route::Quinn);
    for (k, (route, v)) in data.iter().enumerate() {
        let yy = ly + 20.0 + 20.0 * k as f64;
        let label = match route {
            Route::Dataplane if quic => {
                "data plane: Client::submit \u{2192} its own QUIC connection"
            }
            Route::Dataplane => "data plane: Client::submit \u{2192} delegated send",
            Route::Quinn => "quinn: sol-trade-sdk's QUIC client, kernel UDP, tokio",
            Route::Reqwest => "reqwest: HTTP/1.1 keep-alive, TCP_NODELAY, tokio",
            Route::Kernel => "kernel socket: own TcpStream, keep-alive, TCP_NODELAY",
        };
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = if sorted.is_empty() {
            String::from("-")
        } else {
            let rank = ((0.99 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            us_text(sorted[rank - 1])
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x1}" y1="{y0:.1}" x2="{x2}" y2="{y0:.1}" stroke="{c}" stroke-width="3"/><text x="{tx}" y="{ty:.1}" font-size="12">{l} (n={n}, p99 {p99})</text>"##,
            x1 = lx + 10.0,
            x2 = lx + 40.0,
            y0 = yy - 4.0,
            c = route.colour(),
            tx = lx + 48.0,
            ty = yy,
            l = xml(label),
            n = v.len()
        );
    }
}

/// The histogram panel: log-spaced bins, the paths side by side in each bin.
fn histogram(s: &mut String, axis: &Axis, data: &[(Route, Vec<f64>)]) {
    let bin_of = |v: f64| ((axis.fraction(v) * BINS as f64) as usize).min(BINS - 1);
    let counts: Vec<Vec<u32>> = data
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0u32; BINS];
            for &val in v {
                c[bin_of(val)] += 1;
            }
            c
        })
        .collect();
    let top_count = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let step = nice_step(top_count, 5.0).max(1.0);
    let y_max = (top_count / step).ceil() * step;
    let (top, h) = HIST;
    let hy = |c: f64| top + h - c / y_max * h;
    let mut t = 0.0;
    while t <= y_max + 1e-9 {
        let py = hy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12">{t}</text>"##,
            x2 = LEFT + PLOT_W,
            tx = LEFT - 6.0,
            ty = py + 4.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="22" y="{ty}" text-anchor="middle" transform="rotate(-90 22 {ty})">requests per bin</text>"##,
        ty = top + h / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{ty}" font-size="14" font-weight="bold">Histogram ({BINS} log-spaced bins)</text>"##,
        ty = top - 8.0
    );
    let bin_w = PLOT_W / BINS as f64;
    let paths = counts.len().max(1) as f64;
    for (k, ((route, _), c)) in data.iter().zip(&counts).enumerate() {
        for (b, &n) in c.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let bx = LEFT + b as f64 * bin_w + 1.0 + k as f64 * (bin_w - 2.0) / paths;
            let _ = writeln!(
                s,
                r##"<rect x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{bh:.1}" fill="{c}" fill-opacity="0.85"/>"##,
                by = hy(n as f64),
                bw = (bin_w - 2.0) / paths,
                bh = top + h - hy(n as f64),
                c = route.colour()
            );
        }
    }
}
