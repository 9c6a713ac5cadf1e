//! The report's plots, drawn with plotters into SVG strings.
//!
//! plotters is built without its `ttf`/`ab_glyph` features, so text layout uses its naive
//! estimate and the SVG backend writes plain `<text>` elements: no font file is needed when
//! the report is rendered, and the browser picks the font when it is viewed.

use plotters::prelude::*;

/// Plot size, px (the page scales it to its width).
const SIZE: (u32, u32) = (900, 380);
const FONT: &str = "sans-serif";
const POINTS: RGBColor = RGBColor(36, 86, 166);
const TRACE: RGBColor = RGBColor(36, 86, 166);
const FIT: RGBColor = RGBColor(200, 50, 40);
const WINDOW: RGBColor = RGBColor(245, 166, 35);

/// A scatter point.
pub(crate) type Xy = (f64, f64);

/// Lowest and highest finite value, padded by 5 % (or by 1 when they are equal).
fn padded(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn text_size(n: u32) -> TextStyle<'static> {
    (FONT, n).into_font().into()
}

/// Draw into an SVG string with `draw`, mapping plotters errors to messages.
fn svg_of(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// One host's power trace for the power plot.
pub(crate) struct PowerPlot<'a> {
    /// Host name and role, for the title.
    pub title: &'a str,
    /// Continuous stretches of (time in `time_unit`, W); gaps split stretches.
    pub segments: &'a [Vec<Xy>],
    /// Static power P_0, W.
    pub p0_w: Option<f64>,
    /// Migration windows, (start, end) in `time_unit`.
    pub windows: &'a [(f64, f64)],
    /// Time axis range, in `time_unit`.
    pub x_range: (f64, f64),
    /// X axis label with unit.
    pub x_label: &'a str,
}

/// Power over time with P_0 as a horizontal line and every migration window shaded.
pub(crate) fn power(p: &PowerPlot<'_>) -> Result<String, String> {
    let y = padded(
        p.segments
            .iter()
            .flatten()
            .map(|(_, w)| *w)
            .chain(p.p0_w)
            .chain(p.p0_w.map(|w| w * 0.98)),
    )
    .ok_or("no power values to plot")?;
    let (x0, x1) = if p.x_range.1 > p.x_range.0 {
        p.x_range
    } else {
        (p.x_range.0, p.x_range.0 + 1.0)
    };
    svg_of(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(p.title, text_size(18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y.0..y.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(p.x_label)
            .y_desc("power [W]")
            .label_style(text_size(13))
            .axis_desc_style(text_size(14))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        if !p.windows.is_empty() {
            chart
                .draw_series(p.windows.iter().map(|&(a, b)| {
                    Rectangle::new(
                        [(a.max(x0), y.0), (b.min(x1), y.1)],
                        WINDOW.mix(0.3).filled(),
                    )
                }))
                .map_err(err)?
                .label("migration window")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], WINDOW.mix(0.5).filled())
                });
        }
        for (i, seg) in p.segments.iter().enumerate() {
            let s = chart
                .draw_series(LineSeries::new(seg.iter().copied(), TRACE.stroke_width(1)))
                .map_err(err)?;
            if i == 0 {
                s.label("power")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], TRACE));
            }
        }
        if let Some(p0) = p.p0_w {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, p0), (x1, p0)],
                    8,
                    5,
                    FIT.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("P_0 = {p0:.1} W"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], FIT.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .label_font(text_size(13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)
    })
}

/// A scatter plot with a reference line through it.
pub(crate) struct Scatter<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Points.
    pub points: &'a [Xy],
    /// Legend of the points.
    pub points_label: &'a str,
    /// A straight line y = slope x + intercept over the x range, with its legend.
    pub line: Option<(f64, f64, String)>,
    /// Whether the x and y ranges are the same (for y = x plots).
    pub same_ranges: bool,
    /// X axis label with unit.
    pub x_label: &'a str,
    /// Y axis label with unit.
    pub y_label: &'a str,
}

/// A scatter plot with an optional reference line.
pub(crate) fn scatter(s: &Scatter<'_>) -> Result<String, String> {
    let mut xs = padded(s.points.iter().map(|p| p.0)).ok_or("no points to plot")?;
    let mut ys = padded(s.points.iter().map(|p| p.1)).ok_or("no points to plot")?;
    if s.same_ranges {
        let both = (xs.0.min(ys.0), xs.1.max(ys.1));
        xs = both;
        ys = both;
    } else if let Some((slope, icept, _)) = &s.line {
        // Keep the fitted line in view over the data's x range.
        ys =
            padded([ys.0, ys.1, slope * xs.0 + icept, slope * xs.1 + icept]).expect("finite range");
    }
    svg_of(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(s.title, text_size(18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(s.x_label)
            .y_desc(s.y_label)
            .label_style(text_size(13))
            .axis_desc_style(text_size(14))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        if let Some((slope, icept, label)) = &s.line {
            let f = |x: f64| slope * x + icept;
            chart
                .draw_series(LineSeries::new(
                    [(xs.0, f(xs.0)), (xs.1, f(xs.1))],
                    FIT.stroke_width(2),
                ))
                .map_err(err)?
                .label(label.as_str())
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], FIT.stroke_width(2)));
        }
        chart
            .draw_series(
                s.points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&p| Circle::new(p, 4, POINTS.mix(0.75).filled())),
            )
            .map_err(err)?
            .label(s.points_label)
            .legend(|(x, y)| Circle::new((x + 8, y), 4, POINTS.filled()));
        chart
            .configure_series_labels()
            .label_font(text_size(13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_axis_labels_without_a_font_file() {
        let svg = scatter(&Scatter {
            title: "t",
            points: &[(1.0, 2.0), (2.0, 4.5)],
            points_label: "migrations",
            line: Some((2.0, 0.0, "fit".into())),
            same_ranges: false,
            x_label: "V_mig [MB]",
            y_label: "E_mig [J]",
        })
        .unwrap();
        assert!(svg.contains("<text"), "{svg}");
        assert!(svg.contains("V_mig [MB]") && svg.contains("E_mig [J]"));
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn empty_and_constant_inputs_do_not_panic() {
        assert!(padded([]).is_none());
        let (lo, hi) = padded([3.0, 3.0]).unwrap();
        assert!(lo < 3.0 && hi > 3.0);
        let seg = vec![vec![(0.0, 100.0), (1.0, 100.0)]];
        let svg = power(&PowerPlot {
            title: "h",
            segments: &seg,
            p0_w: Some(100.0),
            windows: &[(0.2, 0.4)],
            x_range: (0.0, 0.0),
            x_label: "time [s]",
        })
        .unwrap();
        assert!(svg.contains("power [W]"));
    }
}
