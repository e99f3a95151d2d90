use std::process::ExitCode;

fn main() -> ExitCode {
    invoice_sync::cli::main()
}
