//! `commonsd`, the commons-signal peer daemon.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use commons_node::config::{Cli, Config, default_base_dir};
use std::sync::Arc;

use commons_node::daemon::{Daemon, Options, cookie_path, create_datadir, wait_for_signal};
use commons_node::logfile::LogFile;
use commons_node::service;

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
    if let Some(shell) = cli.print_completions {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "commonsd",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = &cli.write_man_page {
        return match write_man_page(dir) {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("commonsd: error: {e}");
                ExitCode::from(1)
            }
        };
    }
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

    let log_file = match &cli.log_file {
        None => None,
        Some(path) => {
            let path = config.datadir.join(path);
            let opened = create_datadir(&config.datadir, config.rpc_cookie_perms)
                .and_then(|()| LogFile::open(&path).map_err(anyhow::Error::from));
            match opened {
                Ok(log) => Some(Arc::new(log)),
                Err(e) => {
                    eprintln!(
                        "commonsd: error: cannot open the log file {}: {e:#}",
                        path.display()
                    );
                    return ExitCode::from(1);
                }
            }
        }
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    match &log_file {
        // Colour codes only for a person at a terminal, not in log files and journals.
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Some(log) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(log.clone())
            .with_ansi(false)
            .init(),
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("commonsd: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        // Installed before anything else runs: SIGHUP's default action would kill the node.
        spawn_reopen_on_hangup(log_file.clone())?;
        let stop_signal = wait_for_signal();
        let daemon = Daemon::start(&config, Options::default()).await?;
        println!(
            "commonsd is running on {}: JSON-RPC at http://{} (cookie {}), metrics at http://{}/metrics; try `{}`",
            config.spec.name,
            daemon.rpc_addr,
            cookie_path(&config).display(),
            daemon.metrics_addr,
            config.cli_hint(&cli),
        );
        // Only now, with the RPC server answering, is the node "started" for systemd.
        service::notify_or_warn(&format!(
            "READY=1\nSTATUS=running on {}, JSON-RPC at {}",
            config.spec.name, daemon.rpc_addr
        ));
        tokio::select! {
            _ = stop_signal => {}
            _ = daemon.stop_requested() => tracing::info!("stop requested over RPC"),
        }
        tracing::info!("shutting down");
        service::notify_or_warn("STOPPING=1\nSTATUS=shutting down");
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

/// Writes `commonsd.1` into `dir` (created if missing), generated from the flags.
fn write_man_page(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    let path = dir.join("commonsd.1");
    std::fs::write(&path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Reopens the log file on every SIGHUP (logrotate's signal), or notes that there is none;
/// never stops the node.
fn spawn_reopen_on_hangup(log: Option<Arc<LogFile>>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match &log {
                    Some(log) => match log.reopen() {
                        Ok(()) => {
                            tracing::info!(path = %log.path().display(), "SIGHUP: reopened the log file")
                        }
                        Err(e) => {
                            tracing::warn!(path = %log.path().display(), error = %e, "SIGHUP: cannot reopen the log file; still writing to the old one")
                        }
                    },
                    None => tracing::info!(
                        "SIGHUP: no log file to reopen (see --log-file); still running"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = log;
    Ok(())
}
