//! Shell completions and man pages, derived from the clap definition.
//!
//! The checked-in `completions/` and `man/` are the output of `cargo run --example generate`;
//! a test regenerates them into a temporary folder and fails if they differ.

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
        if shell == Shell::Bash {
            out = bash_paths_for_send(&String::from_utf8_lossy(&out)).into_bytes();
        }
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

/// clap_complete's bash script offers only options where `mp send` takes paths: complete file
/// names there unless an option is being typed (zsh, fish and the others use the value hint).
fn bash_paths_for_send(script: &str) -> String {
    let Some(start) = script.find("        mp__subcmd__send)") else {
        return script.to_string();
    };
    let end = script[start..]
        .find("\n            ;;\n")
        .map_or(script.len(), |at| start + at);
    let block = script[start..end]
        .replace(
            "if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then",
            "if [[ ${cur} == -* ]] ; then",
        )
        .replace(
            "            COMPREPLY=( $(compgen -W \"${opts}\" -- \"${cur}\") )\n            return 0",
            "            COMPREPLY=( $(compgen -f -- \"${cur}\") )\n            return 0",
        );
    format!("{}{}{}", &script[..start], block, &script[end..])
}

/// One man page: clap_mangen's sections, with a synopsis that shows each option's value and
/// an ENVIRONMENT section.
fn render_man(cmd: &clap::Command, path: &Path) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    out.extend_from_slice(synopsis(cmd).as_bytes());
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut out)?;
    }
    out.extend_from_slice(environment(cmd).as_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    // Each section clap_mangen renders starts with the same two-line preamble: keep one.
    let text = String::from_utf8_lossy(&out);
    let mut seen = std::collections::HashSet::new();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            !line.starts_with(".ie \\n(.g") && !line.starts_with(".el .ds Aq") || seen.insert(*line)
        })
        .collect();
    std::fs::write(path, kept.join("\n") + "\n")
}

/// `.SH SYNOPSIS` with `[--signal URL]` rather than clap_mangen's bare `[--signal]`.
fn synopsis(cmd: &clap::Command) -> String {
    let bold = |text: &str| format!("\\fB{}\\fR", roff_escape(text));
    let italic = |text: &str| format!("\\fI{}\\fR", roff_escape(text));
    let mut line = bold(cmd.get_name());
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let takes_value = arg.get_action().takes_values();
        let value = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map(|name| name.to_string())
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => Some(format!("--{long}")),
            (None, Some(short)) => Some(format!("-{short}")),
            (None, None) => None,
        };
        let piece = match flag {
            Some(flag) if takes_value => format!("{} {}", bold(&flag), italic(&value)),
            Some(flag) => bold(&flag),
            None => italic(&value),
        };
        line.push_str(&format!(" [{piece}]"));
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        line.push_str(&format!(" {}", italic("COMMAND")));
    }
    format!(".SH SYNOPSIS\n{line}\n")
}

/// `.SH ENVIRONMENT`: the variables this command reads.
fn environment(cmd: &clap::Command) -> String {
    let mut vars: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let name = a.get_env()?.to_string_lossy().into_owned();
            let what = match a.get_long() {
                Some(long) => format!("as --{long}"),
                None => format!("as the {} argument", a.get_id().to_string().to_uppercase()),
            };
            Some((name, what))
        })
        .collect();
    if cmd.get_name() != "mp-signal" {
        vars.push(("NO_COLOR".into(), "when set, mp prints no colour".into()));
        vars.push((
            "MP_SCTP_MTU".into(),
            format!(
                "SCTP packet size in bytes to start from (512 to 16000), for measurements; \
                 path MTU discovery raises it up to {}",
                crate::peer::MAX_SCTP_PATH_MTU
            ),
        ));
    }
    let mut out = String::from(".SH ENVIRONMENT\n");
    for (name, meaning) in vars {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff_escape(&name),
            roff_escape(&meaning)
        ));
    }
    out
}

/// Escapes what roff would read as commands.
fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}
