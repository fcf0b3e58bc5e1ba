//! The `ebox` binary: one image serves every Deployment. See `ebox --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ebox::cli::Cli::parse().run().await
}
