//! Writing outputs safely. Every output goes to a temporary file beside its destination and is
//! renamed into place when complete, so a failed or interrupted write leaves the previous file
//! intact, and the error names the file. The file ends with the mode a plain create gives
//! (0666 minus the umask), whatever the writer used for its temporary (some create 0600).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_with(path, |tmp| {
        std::fs::write(tmp, bytes.as_ref()).map_err(anyhow::Error::from)
    })
}

/// Runs `write` on a temporary path beside `path` and renames the result into place (for
/// writers that take a path: figures, tokenizers, safetensors).
pub fn write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_beside(path);
    let done = write(&tmp)
        .and_then(|()| set_default_mode(&tmp, path))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done.with_context(|| format!("{}: cannot write", path.display()))
}

/// `DIR/.STEM.tmp-PID-N.EXT`: hidden, beside the destination (so the rename stays on one file
/// system), unique within and across processes, with the destination's extension (writers
/// such as the PNG encoder choose the format by it).
fn temporary_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let part = |s: Option<&std::ffi::OsStr>| s.map(|n| n.to_string_lossy().to_string());
    let stem = part(path.file_stem()).unwrap_or_default();
    let ext = part(path.extension()).map_or(String::new(), |e| format!(".{e}"));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{stem}.tmp-{}-{n}{ext}", std::process::id()))
}

/// Gives `tmp` the mode a plain create of a file in `dest`'s folder gets.
#[cfg(unix)]
fn set_default_mode(tmp: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = default_mode(dest.parent().unwrap_or(Path::new(".")))?;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_default_mode(_tmp: &Path, _dest: &Path) -> Result<()> {
    Ok(())
}

/// The permission bits a newly created file gets here (0666 minus the umask), found once by
/// creating one (reading the umask would change it for every thread).
#[cfg(unix)]
fn default_mode(dir: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    static MODE: OnceLock<u32> = OnceLock::new();
    if let Some(m) = MODE.get() {
        return Ok(*m);
    }
    let probe = temporary_beside(&dir.join("mode-probe"));
    let file = std::fs::File::create(&probe)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    drop(file);
    let _ = std::fs::remove_file(&probe);
    Ok(*MODE.get_or_init(|| mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_file(&p, "old").unwrap();
        let e = write_with(&p, |tmp| {
            std::fs::write(tmp, "half")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("out.json: cannot write"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary left behind");
    }

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_mode_of_a_plain_create() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let p = dir.path().join("secret-by-default");
        // A writer that creates its temporary 0600, as tempfile does.
        write_with(&p, |tmp| {
            std::fs::write(tmp, "x")?;
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            want
        );
    }
}
