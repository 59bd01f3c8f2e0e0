//! Progress bars on stderr, one style for every command.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` items counted as `unit` (e.g. "tasks"), with `extra` fields after the count
/// (indicatif template keys such as `{msg}`, `{elapsed}`, `{per_sec}`).
pub(super) fn bar(len: usize, unit: &str, extra: &str) -> ProgressBar {
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}  {extra}");
    ProgressBar::new(len as u64)
        .with_style(ProgressStyle::with_template(&template).expect("valid template"))
}

/// A line above the bar, or plain on stderr where the bar is not drawn (not a terminal).
pub(super) fn line(bar: &ProgressBar, text: String) {
    if bar.is_hidden() {
        eprintln!("{text}");
    } else {
        bar.println(text);
    }
}
