//! The end-to-end plot: plain SVG text, two panels sharing a log-scale x axis in microseconds.

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

/// The report's SVG: a CDF panel (one polyline per path) over a histogram panel, both with the
/// same log x axis in microseconds, medians marked, a legend and a note on the paths.
pub(crate) fn svg(title: &str, data: &[(Route, Vec<f64>)]) -> String {
    use std::fmt::Write;
    const W: f64 = 960.0;
    const H: f64 = 760.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 30.0;
    let (cdf_top, cdf_h) = (110.0, 300.0);
    let (hist_top, hist_h) = (480.0, 200.0);
    let plot_w = W - LEFT - RIGHT;

    let all = data.iter().flat_map(|(_, v)| v.iter().copied());
    let (min, max) = all.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min = min.max(0.1);
    let max = max.max(min * 1.5);
    // Axis range: a little room each side, snapped to 1-2-5 values.
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
    let lo = snap_down(min / 1.1);
    let hi = snap_up(max * 1.1);
    let x = |v: f64| LEFT + (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * plot_w;

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="13">
<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>
<text x="{cx}" y="30" text-anchor="middle" font-size="18" font-weight="bold">{t}</text>
<text x="{cx}" y="52" text-anchor="middle" font-size="12" fill="#444">submit/send (client CLOCK_MONOTONIC) to the relay having received the whole request (relay CLOCK_MONOTONIC, same host)</text>
<text x="{cx}" y="70" text-anchor="middle" font-size="12" fill="#444">data plane: delegated sends on swqos control's idle kernel connections; reqwest and the kernel socket: their own keep-alive connections</text>
"##,
        cx = W / 2.0,
        t = xml(title)
    );

    // Shared x grid and labels for both panels.
    let ticks = log_ticks(lo, hi);
    for (top, h) in [(cdf_top, cdf_h), (hist_top, hist_h)] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{h}" fill="#fafafa" stroke="#999"/>"##
        );
        for &(v, labelled) in &ticks {
            let px = x(v);
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
            r##"<text x="{cx}" y="{ty}" text-anchor="middle" font-size="13">latency, submit/send &#8594; relay receipt (&#181;s, log scale)</text>"##,
            cx = LEFT + plot_w / 2.0,
            ty = top + h + 36.0
        );
    }

    // CDF panel.
    let cy = |f: f64| cdf_top + cdf_h - f * cdf_h;
    for p in (0..=10).map(|i| i as f64 / 10.0) {
        let py = cy(p);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12">{pc:.0}%</text>"##,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            pc = p * 100.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="22" y="{ty}" text-anchor="middle" transform="rotate(-90 22 {ty})">cumulative fraction of requests</text>"##,
        ty = cdf_top + cdf_h / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{ty}" font-size="14" font-weight="bold">CDF</text>"##,
        ty = cdf_top - 8.0
    );
    for (route, v) in data {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mut pts = String::new();
        for (i, &val) in sorted.iter().enumerate() {
            let px = x(val);
            let _ = write!(
                pts,
                "{px:.1},{:.1} {px:.1},{:.1} ",
                cy(i as f64 / n),
                cy((i + 1) as f64 / n)
            );
        }
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{c}" stroke-width="2.2" stroke-linejoin="round" points="{p}"/>"##,
            c = route.colour(),
            p = pts.trim_end()
        );
    }
    // Medians: dashed lines down through both panels, labelled in the CDF.
    for (k, (route, v)) in data.iter().enumerate() {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            continue;
        }
        let med = median(&sorted);
        let px = x(med);
        for (top, h) in [(cdf_top, cdf_h), (hist_top, hist_h)] {
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{y2}" stroke="{c}" stroke-width="1.2" stroke-dasharray="5,4"/>"##,
                c = route.colour(),
                y2 = top + h
            );
        }
        // Left of a CDF's median and above 50 % is empty for every curve right of it, so the
        // leftmost median is labelled there; the others right of their line, below 50 %.
        let leftmost = data
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| median(v))
            .fold(f64::MAX, f64::min);
        let (anchor, dx, ty) = if med <= leftmost {
            ("end", -6.0, cy(0.5) - 8.0)
        } else {
            ("start", 6.0, cy(0.5) + 16.0 + 16.0 * k as f64)
        };
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-size="12" fill="{c}" font-weight="bold" stroke="#ffffff" stroke-width="3" paint-order="stroke">p50 {m}</text>"##,
            tx = px + dx,
            c = route.colour(),
            m = us_text(med)
        );
    }
    // Legend: bottom right of the CDF panel, which a CDF never reaches.
    let (lw, lh) = (600.0, 14.0 + 20.0 * data.len() as f64);
    let (lx, ly) = (LEFT + plot_w - lw - 10.0, cdf_top + cdf_h - lh - 10.0);
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" fill="#ffffff" fill-opacity="0.92" stroke="#bbb"/>"##
    );
    for (k, (route, v)) in data.iter().enumerate() {
        let yy = ly + 20.0 + 20.0 * k as f64;
        let label = match route {
            Route::Dataplane => "data plane: Client::submit \u{2192} delegated send",
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

    // Histogram panel: log-spaced bins, the two paths side by side in each bin.
    const BINS: usize = 40;
    let bin_of = |v: f64| {
        let f = (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln());
        ((f * BINS as f64) as usize).min(BINS - 1)
    };
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
    let hy = |c: f64| hist_top + hist_h - c / y_max * hist_h;
    let mut t = 0.0;
    while t <= y_max + 1e-9 {
        let py = hy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="12">{t}</text>"##,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = py + 4.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="22" y="{ty}" text-anchor="middle" transform="rotate(-90 22 {ty})">requests per bin</text>"##,
        ty = hist_top + hist_h / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{ty}" font-size="14" font-weight="bold">Histogram ({BINS} log-spaced bins)</text>"##,
        ty = hist_top - 8.0
    );
    let bin_w = plot_w / BINS as f64;
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
                bh = hist_top + hist_h - hy(n as f64),
                c = route.colour()
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
