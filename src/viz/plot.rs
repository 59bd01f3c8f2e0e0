//! PNG figures with plotters: a UMAP scatter coloured by class, score bars with error bars, and
//! a scIB-style results table. Text is drawn with DejaVu Sans compiled into the binary (the
//! `dejavu` crate, registered with plotters' ab_glyph backend), so figures render on machines
//! with no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid TrueType; a failure here would be a packaging bug.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// A categorical palette (Tableau 10), then grey for the "other" class.
pub(crate) fn colour(i: usize) -> RGBColor {
    const P: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = P[i % P.len()];
    RGBColor(r, g, b)
}

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("{}: cannot draw figure ({e:?})", path.display())
}

/// A white canvas of `size` pixels that draws to `path`, with the font registered.
fn canvas(
    path: &Path,
    size: (u32, u32),
) -> Result<DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>> {
    register_font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    Ok(root)
}

/// A scatter plot of 2-D points coloured by class. `classes[i]` indexes `class_names`; points
/// of class `None` are drawn first, small and light grey ("unlabelled").
pub(crate) fn scatter_png(
    path: &Path,
    title: &str,
    xy: &[[f32; 2]],
    classes: &[Option<usize>],
    class_names: &[String],
    size: (u32, u32),
) -> Result<()> {
    let e = err(path);
    let root = canvas(path, size)?;
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for p in xy {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if xy.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |lo: f32, hi: f32| {
        let p = ((hi - lo) * 0.05).max(1e-3);
        (lo - p)..(hi + p)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(pad(x0, x1), pad(y0, y1))
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("UMAP 1")
        .y_desc("UMAP 2")
        .label_style((FONT, 13))
        .draw()
        .map_err(&e)?;
    let grey = RGBColor(200, 200, 200);
    let others: Vec<(f32, f32)> = xy
        .iter()
        .zip(classes)
        .filter(|(_, c)| c.is_none())
        .map(|(p, _)| (p[0], p[1]))
        .collect();
    if !others.is_empty() {
        chart
            .draw_series(others.iter().map(|&p| Circle::new(p, 1, grey.filled())))
            .map_err(&e)?
            .label(format!("unlabelled ({})", others.len()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, grey.filled()));
    }
    for (k, name) in class_names.iter().enumerate() {
        let pts: Vec<(f32, f32)> = xy
            .iter()
            .zip(classes)
            .filter(|(_, c)| **c == Some(k))
            .map(|(p, _)| (p[0], p[1]))
            .collect();
        let c = colour(k);
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(&e)?
            .label(format!("{name} ({})", pts.len()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    }
    finish(chart, &root, &e)
}

/// Draws the legend (upper right, framed) and writes the file.
fn finish<'a, X: Ranged, Y: Ranged>(
    mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    root: &DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
    e: &impl Fn(
        DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>,
    ) -> anyhow::Error,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Lines of (x, y) points, one per named series (a series with no points is left out of the
/// legend): training curves.
pub(crate) fn lines_png(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    size: (u32, u32),
) -> Result<()> {
    let e = err(path);
    let root = canvas(path, size)?;
    let all = series
        .iter()
        .flat_map(|(_, p)| p)
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |lo: f64, hi: f64| {
        let p = ((hi - lo) * 0.05).max(1e-6);
        (lo - p)..(hi + p)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(pad(x0, x1), pad(y0, y1))
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .draw()
        .map_err(&e)?;
    for (k, (name, points)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = colour(k);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(&e)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(&e)?;
    }
    finish(chart, &root, &e)
}

/// `s` cut to `n` characters, with an ellipsis when cut.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

/// One bar per (task, embedding set): mean with a ±sd error bar, sets side by side within each
/// task; `values[set][task]` is `None` where a set has no score.
pub(crate) fn bars_png(
    path: &Path,
    title: &str,
    y_label: &str,
    tasks: &[String],
    sets: &[String],
    values: &[Vec<Option<(f64, f64)>>],
    size: (u32, u32),
) -> Result<()> {
    let e = err(path);
    let root = canvas(path, size)?;
    let n_tasks = tasks.len().max(1);
    let n_sets = sets.len().max(1);
    let top = values
        .iter()
        .flatten()
        .flatten()
        .map(|(m, s)| m + s)
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n_tasks as f64, 0f64..top * 1.25)
        .map_err(&e)?;
    let names = tasks.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_desc(y_label)
        .x_labels(n_tasks * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < names.len() {
                short(&names[i], 24)
            } else {
                String::new()
            }
        })
        .x_label_style((FONT, 12))
        .label_style((FONT, 12))
        .draw()
        .map_err(&e)?;
    let width = 0.8 / n_sets as f64;
    for (s, set) in sets.iter().enumerate() {
        let c = colour(s);
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        for (t, v) in values[s].iter().enumerate() {
            if let Some((m, sd)) = *v {
                let x0 = t as f64 + 0.1 + s as f64 * width;
                bars.push(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, m)],
                    c.filled(),
                ));
                let xc = x0 + width * 0.45;
                whiskers.push(PathElement::new(vec![(xc, m - sd), (xc, m + sd)], BLACK));
                for y in [m - sd, m + sd] {
                    whiskers.push(PathElement::new(
                        vec![(xc - width * 0.15, y), (xc + width * 0.15, y)],
                        BLACK,
                    ));
                }
            }
        }
        chart
            .draw_series(bars)
            .map_err(&e)?
            .label(set.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        chart.draw_series(whiskers).map_err(&e)?;
    }
    finish(chart, &root, &e)
}

/// A scIB-style table: one row per embedding set, one column per task, each cell a circle
/// whose size and shade follow the score (min-max within the column), the value written beside.
pub(crate) fn table_png(
    path: &Path,
    title: &str,
    columns: &[String],
    rows: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<()> {
    let e = err(path);
    let (row_h, col_w, left, head) = (40i32, 120i32, 230i32, 120i32);
    let w = (left + col_w * columns.len() as i32 + 20).max(400) as u32;
    let h = (head + row_h * rows.len() as i32 + 20) as u32;
    let root = canvas(path, (w, h))?;
    let text = |s: &str, x: i32, y: i32, size: f64, bold: bool| -> Result<()> {
        let style = if bold {
            (FONT, size).into_font().style(FontStyle::Bold)
        } else {
            (FONT, size).into_font()
        };
        root.draw_text(s, &style.color(&BLACK), (x, y)).map_err(&e)
    };
    text(title, 10, 8, 20.0, true)?;
    for (j, c) in columns.iter().enumerate() {
        let label = short(c, 17);
        text(&label, left + col_w * j as i32 + 4, head - 30, 12.0, true)?;
    }
    for (j, _) in columns.iter().enumerate() {
        let col: Vec<f64> = values.iter().filter_map(|r| r[j]).collect();
        let (lo, hi) = col
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        for (i, row) in values.iter().enumerate() {
            let cy = head + row_h * i as i32 + row_h / 2;
            let cx = left + col_w * j as i32 + 20;
            match row[j] {
                Some(v) => {
                    let t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
                    let r = 5 + (t * 10.0).round() as i32;
                    let shade = RGBColor(
                        (230.0 - 200.0 * t) as u8,
                        (240.0 - 120.0 * t) as u8,
                        (250.0 - 60.0 * t) as u8,
                    );
                    root.draw(&Circle::new((cx, cy), r, shade.filled()))
                        .map_err(&e)?;
                    let best = hi > lo && v == hi || hi == lo;
                    text(&format!("{v:.3}"), cx + 20, cy - 7, 13.0, best)?;
                }
                None => text("–", cx, cy - 7, 13.0, false)?,
            }
        }
    }
    for (i, r) in rows.iter().enumerate() {
        let label = short(r, 28);
        text(
            &label,
            10,
            head + row_h * i as i32 + row_h / 2 - 7,
            14.0,
            false,
        )?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Pixels that are neither white nor one of the palette colours: antialiased glyph edges.
    fn has_dark_pixels(buf: &[u8]) -> bool {
        buf.chunks(3).filter(|p| p.iter().all(|&v| v < 60)).count() > 50
    }

    #[test]
    fn figures_decode_with_the_requested_size_and_carry_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scatter.png");
        let xy: Vec<[f32; 2]> = (0..50).map(|i| [i as f32, (i * i) as f32]).collect();
        let classes: Vec<Option<usize>> = (0..50).map(|i| (i % 3 != 0).then_some(i % 2)).collect();
        scatter_png(
            &p,
            "UMAP",
            &xy,
            &classes,
            &["a".into(), "b".into()],
            (640, 480),
        )
        .unwrap();
        let (w, h, buf) = decode(&p);
        assert_eq!((w, h), (640, 480));
        assert!(has_dark_pixels(&buf), "no text or axes drawn");
        let p = dir.path().join("bars.png");
        let vals = vec![
            vec![Some((0.8, 0.05)), None],
            vec![Some((0.6, 0.02)), Some((0.5, 0.1))],
        ];
        bars_png(
            &p,
            "scores",
            "ROC-AUC",
            &["t1".into(), "t2".into()],
            &["s1".into(), "s2".into()],
            &vals,
            (800, 500),
        )
        .unwrap();
        assert_eq!(decode(&p).0, 800);
        let p = dir.path().join("table.png");
        table_png(
            &p,
            "table",
            &["t1".into(), "t2".into()],
            &["s1".into(), "s2".into()],
            &[vec![Some(0.8), None], vec![Some(0.6), Some(0.5)]],
        )
        .unwrap();
        let (w, h, buf) = decode(&p);
        assert_eq!((w, h), (230 + 240 + 20, 120 + 80 + 20));
        assert!(has_dark_pixels(&buf));
        let p = dir.path().join("lines.png");
        let series = vec![
            (
                "sft".to_string(),
                vec![(0.0, 2.0), (10.0, 1.5), (20.0, f64::NAN)],
            ),
            ("none".to_string(), vec![]),
        ];
        lines_png(&p, "curves", ("step", "loss"), &series, (600, 400)).unwrap();
        let (w, h, buf) = decode(&p);
        assert_eq!((w, h), (600, 400));
        assert!(has_dark_pixels(&buf));
        // The series' colour is drawn.
        let c = colour(0);
        assert!(buf.chunks(3).any(|px| px == [c.0, c.1, c.2]));
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let err = scatter_png(
            Path::new("/nonexistent/dir/x.png"),
            "t",
            &[[0.0, 0.0]],
            &[None],
            &[],
            (100, 100),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir/x.png"), "{err}");
    }
}
