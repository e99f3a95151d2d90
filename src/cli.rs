//! Command-line definitions and dispatch.
use std::process::ExitCode;

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
