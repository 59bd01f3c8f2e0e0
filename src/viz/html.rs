//! Small pieces the HTML pages share: escaping text and inlining PNG files.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;

/// `s` with the characters HTML gives meaning to escaped (for text and attribute values).
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A PNG file as a `data:` URI, so the report is one self-contained file.
pub(super) fn png_data_uri(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}
