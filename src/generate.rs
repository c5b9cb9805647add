//! `mp generate DIR`: shell completions and man pages, derived from the clap definition.
//!
//! The checked-in `completions/` and `man/` are this command's output; a test regenerates them
//! into a temporary folder and fails if they differ.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes `completions/mp.{bash,zsh,fish,ps1,elv}` and `man/mp.1`, `man/mp-*.1` under `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    let completions = dir.join("completions");
    let man = dir.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::PowerShell,
        Shell::Elvish,
    ] {
        let mut cmd = Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "mp", &mut out);
        let name = match shell {
            Shell::Bash => "mp.bash",
            Shell::Zsh => "_mp",
            Shell::Fish => "mp.fish",
            Shell::PowerShell => "_mp.ps1",
            _ => "mp.elv",
        };
        std::fs::write(completions.join(name), out)?;
    }
    let cmd = Cli::command();
    render_man(&cmd, &man.join("mp.1"))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("mp-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        render_man(&sub, &man.join(format!("{name}.1")))?;
    }
    Ok(())
}

fn render_man(cmd: &clap::Command, path: &Path) -> std::io::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(path, out)
}
