//! `commonsd`, the commons-signal peer daemon.

use std::process::ExitCode;

use clap::Parser;
use commons_node::config::{Cli, Config, default_base_dir};
use commons_node::daemon::{Daemon, Options, cookie_path, wait_for_signal};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message ends in a usage block; the first line says what is wrong.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("commonsd: error: {first} (see commonsd --help)");
            return ExitCode::from(2);
        }
    };
    let config = match Config::resolve(&cli, default_base_dir) {
        Ok(config) => config,
        Err(e) => {
            // One line, whatever a parser put in the message.
            eprintln!("commonsd: error: {}", e.to_string().replace('\n', "; "));
            return ExitCode::from(1);
        }
    };
    if cli.print_config {
        let json = serde_json::json!({
            "config": config,
            "network_id": config.spec.network_id().to_hex(),
            "network_name": config.spec.name,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("config serializes")
        );
        return ExitCode::SUCCESS;
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("commonsd: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let daemon = Daemon::start(&config, Options::default()).await?;
        println!(
            "commonsd is running on {}: JSON-RPC at http://{} (cookie {}), metrics at http://{}/metrics; try `{}`",
            config.spec.name,
            daemon.rpc_addr,
            cookie_path(&config).display(),
            daemon.metrics_addr,
            config.cli_hint(&cli),
        );
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = daemon.stop_requested() => tracing::info!("stop requested over RPC"),
        }
        tracing::info!("shutting down");
        daemon.shutdown().await;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("commonsd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
