//! Files nobody here wrote: the published bank statements and e-invoices in the
//! workspace's `shared/testdata/` folder, next to the repository (each with its source
//! and licence in that folder's `PROVENANCE.md`). They are read from there, never copied
//! into the repository.
//!
//! This is the one place that knows where the folder is. CI has it; a clone without it
//! fails the tests that need it with a plain message, never a silent pass.

use std::path::PathBuf;

/// The folder `shared/testdata/<kind>` (`mt940`, `camt053`, `ubl`), or a panic that says
/// plainly that it is absent and where it was looked for.
pub fn dir(kind: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join("testdata");
    let dir = root.join(kind);
    assert!(
        dir.is_dir(),
        "the published test files are absent: {} does not exist. These tests read real \
         statements and e-invoices from the workspace's shared/testdata folder beside the \
         repository (CI has it); check it out there to run them.",
        dir.display()
    );
    dir
}

/// Every file of `shared/testdata/<kind>` but its `PROVENANCE.md`, sorted by name.
pub fn files(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(kind))
        .expect("read the testdata folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "PROVENANCE.md"))
        .collect();
    files.sort();
    files
}
