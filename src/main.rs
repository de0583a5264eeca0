//! `smproxy`: run the proxy (`-c FILE`), check a configuration (`--check -c FILE`), or run the
//! self-contained demo (`demo`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "smproxy",
    version,
    about = "Edge proxy that injects one monitoring code into every HTML page"
)]
struct Cli {
    /// The YAML configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration, print every problem as `field.path: reason`, and exit.
    #[arg(long)]
    check: bool,
    /// Take over the listening sockets of a running smproxy (zero-downtime upgrade).
    #[arg(short = 'u', long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a sample origin, the proxy and the admin listener on loopback, and print the URLs.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Demo) = cli.command {
        init_logging(smproxy::config::LogFormat::Text);
        return report(smproxy::demo::run());
    }
    let Some(path) = cli.config else {
        eprintln!("smproxy: no configuration; use `smproxy -c FILE`, or `smproxy demo` to try it");
        return ExitCode::from(2);
    };
    let settings = match smproxy::config::load_file(&path) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!(
                "{}: {} problem(s)\n{errors}",
                path.display(),
                errors.0.len()
            );
            return ExitCode::from(1);
        }
    };
    if cli.check {
        let https = settings.sites.iter().filter(|s| s.tls.is_some()).count();
        println!(
            "{}: ok ({} site(s), {https} with a valid certificate and key)",
            path.display(),
            settings.sites.len()
        );
        return ExitCode::SUCCESS;
    }
    init_logging(settings.log.format);
    let opts = smproxy::server::ProcessOptions {
        upgrade: cli.upgrade,
        ..Default::default()
    };
    match smproxy::server::build(Arc::new(settings), opts) {
        Ok(built) => built.run_forever(),
        Err(e) => report(Err(e)),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smproxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr (journald and container runtimes collect it): text for people, or one JSON
/// object per line for log pipelines. `SMPROXY_LOG` filters (default `info`).
fn init_logging(format: smproxy::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMPROXY_LOG")
        .unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        smproxy::config::LogFormat::Json => fmt.json().flatten_event(true).init(),
        smproxy::config::LogFormat::Text => fmt.init(),
    }
}
