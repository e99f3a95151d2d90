//! Runs a child process to its end and reports its exit code, wall time and peak RSS
//! (from `wait4`): for the benchmarks and for the tests that bound memory. The benchmarks
//! include it by path (`#[path = ...] mod measure;`), so there is one copy. Linux starts a
//! child's peak RSS at its parent's when the child is spawned, so the figure is the child's
//! own only when the parent is small (a benchmark, or `tests/memory.rs`), never inside the
//! big test binary.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of a child cost.
pub struct Measured {
    /// Its exit code (-1 when a signal ended it).
    pub code: i32,
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set size, KiB.
    pub peak_rss_kib: i64,
}

/// Runs `cmd` with its stdout and stderr discarded, to its end.
// The child is reaped by `wait4` (which also reports its peak RSS), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn run(mut cmd: Command) -> Measured {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the command");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers; reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    Measured {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        wall,
        peak_rss_kib: usage.ru_maxrss,
    }
}
