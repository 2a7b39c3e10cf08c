//! The `aiops` binary: parses the command line and configuration, installs tracing, wires the
//! stages and handles signals. Everything else lives in the library crates.

mod backfill;
mod cli;
mod config;
mod demo;
mod models;
mod outputs;
mod serve;
mod train;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// jemalloc rather than glibc's allocator: the head's Arrow buffers are allocated and freed in
/// megabytes; glibc raises its mmap threshold after such frees and then keeps the memory
/// (RSS stayed at the head's high-water mark), jemalloc returns it within seconds.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(run(cli));
    // Whatever still runs on the blocking pool (a stage cut off at the end of the shutdown
    // grace period) does not hold up the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Serve(args) => {
            let mut cfg = config::Config::load(args.config.as_deref())?
                .with_overrides(args.listen, args.data_dir)
                .with_bus(args.bus.as_deref(), args.kafka_brokers)?;
            cfg.server.allow_unauthenticated |= args.insecure_listen;
            cfg.validate()?;
            serve::serve(cfg, shutdown_on_signal(), None).await
        }
        cli::Command::Demo(args) => demo::run(args, shutdown_on_signal()).await,
        cli::Command::Backfill(args) => backfill::run(*args).await,
        cli::Command::CheckConfig(args) => {
            let cfg = config::Config::load(Some(&args.file))?;
            println!(
                "{}: ok (listen {}, data_dir {}, {} prometheus source(s), {} appinsights source(s))",
                args.file.display(),
                cfg.server.listen,
                cfg.archive.data_dir.display(),
                cfg.sources.prometheus.len(),
                cfg.sources.appinsights.len()
            );
            Ok(())
        }
        cli::Command::Bench(args) => {
            let serve: aiops_eval::bench::Serve = Box::new(|spec| {
                Box::pin(async move {
                    let mut cfg = config::Config::default()
                        .with_overrides(Some("127.0.0.1:0".parse()?), Some(spec.data_dir));
                    cfg.archive.fsync = spec.fsync;
                    serve::serve(cfg, spec.cancel, Some(spec.ready)).await
                })
            });
            aiops_eval::bench::run(args, serve).await
        }
        cli::Command::Eval(args) => aiops_eval::run(args, |a| {
            // The server's detection settings: its configuration, the active model version's
            // detector parameters winning as in `serve`.
            let detect = config::Config::load(a.config.as_deref())?.detect;
            Ok(aiops_eval::ReplaySettings {
                detector: aiops_detect::registered::active_detector(&a.data_dir)?
                    .map_or(detect.detector, |(_, c)| c),
                event_score: detect.event_score,
                event_quiet_secs: detect.event_quiet_secs,
            })
        }),
        cli::Command::Models(args) => models::run(args),
        cli::Command::Train(args) => train::run(args),
        cli::Command::Archive(args) => archive(args),
    }
}

/// `aiops archive verify|repair`: the offline checks of `aiops_ingest::archive::check`.
fn archive(args: cli::ArchiveArgs) -> anyhow::Result<()> {
    use aiops_ingest::archive::check;
    let dir = &args.data_dir;
    match args.what {
        cli::ArchiveWhat::Verify => {
            let report = check::verify(dir)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.damage.is_empty() {
                anyhow::bail!(
                    "{} damaged file(s) in {}; `aiops archive repair --data-dir {}` salvages what is readable",
                    report.damage.len(),
                    dir.display(),
                    dir.display()
                );
            }
        }
        cli::ArchiveWhat::Repair => {
            let report = check::repair(dir)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AIOPS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AIOPS_LOG_FORMAT").is_ok_and(|v| v == "json");
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A token cancelled on SIGINT or SIGTERM; a second signal exits at once.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            "Shutting down: draining requests and flushing the archive (signal again to exit now)."
        );
        t.cancel();
        wait_for_signal().await;
        tracing::warn!("Second signal: exiting without draining.");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
