//! Headless Chromium (Debian's `chromium`) to open a page as a reader would: its DOM after
//! parsing, a screenshot, and what it wrote to the console.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Rendered {
    /// The document as Chromium parsed it (`--dump-dom`).
    pub dom: String,
    /// Console messages (errors, warnings, logs) the page produced.
    pub console: Vec<String>,
}

fn binary() -> PathBuf {
    let path = std::env::var_os("BURNRATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "no Chromium at {} (scripts/test.sh installs Debian's chromium; or set BURNRATE_CHROMIUM)",
        path.display()
    );
    path
}

/// Opens `page` with no network, saves a `width`×`height` screenshot to `screenshot`, and
/// returns the parsed DOM and the console.
pub fn render(page: &Path, screenshot: &Path, width: u32, height: u32) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", std::path::absolute(page).unwrap().display());
    let run = |mode: &str| {
        let out = Command::new(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={width},{height}"),
                mode,
                &url,
            ])
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let shot = run(&format!("--screenshot={}", screenshot.display()));
    let dom = run("--dump-dom");
    let console = [shot.stderr, dom.stderr.clone()]
        .iter()
        .flat_map(|err| {
            String::from_utf8_lossy(err)
                .lines()
                .filter(|l| l.contains(":CONSOLE"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    Rendered {
        dom: String::from_utf8(dom.stdout).unwrap(),
        console,
    }
}
