//! The `sluice` binary; see [`sluice::cli`].

use clap::Parser;

/// How long blocking work still running when a command has ended may hold
/// the process's exit.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> std::process::ExitCode {
    let cli = sluice::cli::Cli::parse();
    if let Err(e) = cli.init_logging() {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(sluice::cli::main(cli));
    // Everything the command awaits has finished. Blocking work nobody
    // awaits any more must not hold the exit (dropping the runtime would
    // wait for it without end): it gets a moment, then the process ends.
    let exiting = std::time::Instant::now();
    runtime.shutdown_timeout(EXIT_GRACE);
    if exiting.elapsed() >= EXIT_GRACE {
        tracing::warn!(
            "blocking work was still running {EXIT_GRACE:?} after the command ended; exiting without it"
        );
    }
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
