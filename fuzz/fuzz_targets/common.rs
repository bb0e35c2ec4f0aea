//! Shared by the fuzz targets.

use std::sync::OnceLock;

/// Bugs already reported, tolerated when named in `FERROFTP_FUZZ_ALLOW` (comma-separated), so
/// that fuzzing can go on looking for new ones. `run.sh` sets it to the open issues listed in
/// fuzz/README.md; `FERROFTP_FUZZ_ALLOW= fuzz/run.sh` runs with every check strict.
pub fn known_issue(id: &str) -> bool {
    static ALLOW: OnceLock<Vec<String>> = OnceLock::new();
    ALLOW
        .get_or_init(|| {
            std::env::var("FERROFTP_FUZZ_ALLOW")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|a| a == id)
}
