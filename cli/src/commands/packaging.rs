//! What packagers install beside the binary, generated from the clap definitions so they
//! cannot drift from the commands: shell completions and man pages.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Context;
use crate::cli::Cli;
use crate::error::{CliError, Result};

/// Prints the completion script of `commons-cli` for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> Result {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "commons-cli", &mut std::io::stdout());
    Ok(())
}

/// Writes `commons-cli.1` and one page per command (`commons-cli-key-generate.1`, ...) into
/// `dir`, creating it, and lists the files written: one a line, or with `--json` as
/// `{"files": [...]}`.
pub fn man_pages(ctx: &Context, dir: &Path) -> Result {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Input(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    let mut command = Cli::command();
    command.build();
    let mut written = Vec::new();
    write_pages(&command, dir, &mut written)?;
    if ctx.json() {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        return ctx.emit(&serde_json::json!({ "files": files }));
    }
    for path in written {
        ctx.say(path.display())?;
    }
    Ok(())
}

fn write_pages(command: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result {
    // After `build`, a subcommand's display name is the command line that reaches it
    // (`commons-cli-key-generate`), the page name git and cargo use too.
    let page = clap_mangen::Man::new(command.clone());
    let path = page.generate_to(dir).map_err(|e| {
        CliError::Input(anyhow::anyhow!(
            "cannot write {}: {e}",
            dir.join(page.get_filename()).display()
        ))
    })?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
