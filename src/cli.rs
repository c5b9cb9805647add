//! The command line: clap definitions for `mp signal`, `mp send` and `mp receive`.
//!
//! Completions and the man page in `completions/` and `man/` are generated from [`Cli`] by
//! `mp generate` (see README), and a test fails when the checked-in copies are stale.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Send files directly between two machines over WebRTC.";

const LONG_ABOUT: &str = "\
Send files directly between two machines over WebRTC.

Both sides meet through a signaling server (`mp signal`) only long enough to agree on a \
connection; the bytes then travel straight between the two machines over an encrypted WebRTC \
data channel. With no signaling server given, on one local network, the sender runs one itself \
and announces it with mDNS. The code is the only secret: a password-authenticated key exchange (SPAKE2) turns \
it into keys that seal every signaling message, so the server can neither read nor redirect \
the transfer.";

/// `mp`: Meeting Point.
#[derive(Debug, Parser)]
#[command(name = "mp", version, about = ABOUT, long_about = LONG_ABOUT)]
#[command(after_help = exit_codes())]
pub struct Cli {
    /// Print only errors and the code.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr
    /// when stdout carries the received data.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a signaling server that pairs senders and receivers.
    #[command(
        after_help = "The server keeps rooms in memory only, logs no client address, and relays \
sealed messages it cannot read. A room holds one sender and one receiver and is forgotten as soon \
as either leaves."
    )]
    Signal(SignalArgs),
    /// Send files, folders, stdin or a text; prints the code to give to the receiver.
    #[command(after_help = send_help())]
    Send(SendArgs),
    /// Receive what the sender offers, given its code.
    #[command(after_help = receive_help())]
    Receive(ReceiveArgs),
    /// Write shell completions and man pages (for packagers and this repository).
    #[command(hide = true)]
    Generate {
        /// Folder that receives `completions/` and `man/`.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SignalArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// Seconds a room may live, from its first client, before the server closes it.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub room_timeout: u64,

    /// Most connections served at once.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_clients: usize,
}

/// Options shared by `send` and `receive`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous
    /// itself and announces it on the local network (mDNS), where the receiver finds it.
    #[arg(long, env = "MP_SIGNAL", value_name = "URL")]
    pub signal: Option<String>,

    /// Seconds to wait for the other side to arrive (default: 600). Without --signal, also how
    /// long the receiver looks for the sender on the local network (default there: 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Local IP address(es) the direct connection may use (default: every non-loopback
    /// interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs
    /// only on the interfaces of the non-loopback ones.
    #[arg(long, env = "MP_BIND", value_delimiter = ',', value_name = "IP")]
    pub bind: Vec<IpAddr>,

    /// STUN server(s) for finding this machine's public address, e.g. stun:host:3478
    /// (default: what the signaling server hands out).
    #[arg(long, env = "MP_STUN", value_delimiter = ',', value_name = "URL")]
    pub stun: Vec<String>,

    /// TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478
    /// (default: what the signaling server hands out). Needs --turn-user and --turn-password.
    #[arg(long, env = "MP_TURN", value_delimiter = ',', value_name = "URL",
          requires_all = ["turn_user", "turn_password"])]
    pub turn: Vec<String>,

    /// User name for --turn.
    #[arg(long, env = "MP_TURN_USER", value_name = "USER")]
    pub turn_user: Option<String>,

    /// Password for --turn.
    #[arg(
        long,
        env = "MP_TURN_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub turn_password: Option<String>,

    /// Only ever connect through a TURN relay, so the other side never learns this machine's
    /// address.
    #[arg(long, env = "MP_RELAY")]
    pub relay: bool,

    /// SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only
    /// loopback addresses).
    #[arg(long, env = "MP_SCTP_MTU", value_name = "BYTES", hide = true,
          value_parser = clap::value_parser!(u32).range(512..=16000))]
    pub sctp_mtu: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Files and folders to send, or `-` for standard input.
    #[arg(required_unless_present = "text", conflicts_with = "text")]
    pub paths: Vec<PathBuf>,

    /// Send this short text instead of files; the receiver prints it.
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,

    /// The name the receiver gets for standard input (`mp send -`).
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub name: String,

    /// Use this code instead of a generated one (`<number>-<anything>`).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,

    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The code the sender printed, e.g. 7-guitar-ocean.
    pub code: String,

    /// Accept the offer without asking.
    #[arg(short, long)]
    pub yes: bool,

    /// Where to write: an existing folder, a new name for the single file or folder offered,
    /// or `-` for standard output (a single file or stream only).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Replace existing files and merge into existing folders (never through a symbolic link).
    #[arg(long)]
    pub overwrite: bool,

    #[command(flatten)]
    pub net: NetArgs,
}

fn exit_codes() -> String {
    crate::error::Kind::table()
}

fn receive_help() -> String {
    format!(
        "Nothing is written before you accept. Entries are written into a staging folder \
(.mp-partial-<id>) beside the target and get their final names only when every SHA-256 \
matched. If a transfer is interrupted, the staging folder stays: receiving the same offer into \
the same place resumes where it stopped.\n\nExamples:\n  mp receive 7-guitar-ocean\n  \
mp receive 7-guitar-ocean --yes -o ~/Downloads\n  mp receive 7-guitar-ocean -o - | tar x\n\n{}",
        exit_codes()
    )
}

fn send_help() -> String {
    format!(
        "Folders are sent whole, with their empty folders and permission bits. Symbolic links \
inside a folder are not followed: they are skipped, with a warning. A symbolic link named on \
the command line is followed.\n\nExamples:\n  mp send report.pdf\n  mp send photos/ notes.txt\n  \
tar c dir | mp send - --name dir.tar\n  mp send --text 'the wifi password is hunter2'\n\n{}",
        exit_codes()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
