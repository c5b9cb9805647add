//! The command line: clap definitions for `mp signal`, `mp send` and `mp receive`.
//!
//! Completions and the man page in `completions/` and `man/` are generated from [`Cli`] by
//! `mp generate` (see README), and a test fails when the checked-in copies are stale.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};

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
#[command(disable_help_subcommand = true)]
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
    /// List the partial data interrupted transfers left in a folder, or remove it.
    Partial {
        /// The folder to look in (default: the current folder).
        #[arg(default_value = ".", value_hint = ValueHint::DirPath)]
        dir: PathBuf,
        /// Remove them (only those that belong to you and no receiver is using).
        #[arg(long)]
        remove: bool,
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

    /// Seconds open rooms may go on after SIGTERM, which stops new clients at once.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub drain_timeout: u64,

    /// Keep rooms in the Redis at this URL (redis://HOST:PORT, or redis://:PASSWORD@HOST:PORT/DB)
    /// instead of in memory, so that several instances behind one load balancer act as one;
    /// prefer the environment variable, which `ps` does not show.
    #[arg(long, env = "MP_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,

    /// Seconds a room may wait for its second member (within --room-timeout).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub wait_timeout: u64,

    /// Most connections served at once.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_clients: usize,

    /// Seconds a new connection may take for its WebSocket handshake, and again for its
    /// first message.
    #[arg(long, default_value_t = 5, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout: u64,

    /// Most WebSocket handshakes under way at once (past it, new connections are closed).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_handshakes: usize,

    /// Most WebSocket handshakes under way from one client address (an IPv6 /64); the oldest
    /// makes way for a new one.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_handshakes_per_addr: usize,

    /// Most rooms one client address (an IPv6 /64) may keep waiting for their second member.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_waiting_per_addr: u32,

    /// Joins one client address (an IPv6 /64) may make per minute (all at once, then one
    /// every 60/N seconds).
    #[arg(long, default_value_t = 60, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub joins_per_minute: u32,

    /// Serve wss:// and https:// with this certificate chain (PEM, the server's certificate
    /// first). Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", value_hint = ValueHint::FilePath)]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS #8, PKCS #1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert", value_hint = ValueHint::FilePath)]
    pub tls_key: Option<PathBuf>,

    /// Take each client's address from the header a reverse proxy writes: X-Forwarded-For
    /// (its rightmost entry, the default) or Forwarded (RFC 7239). Only when every connection
    /// comes through your proxy: anyone reaching the server directly could claim any address.
    #[arg(long, value_name = "HEADER", num_args = 0..=1, require_equals = true,
          default_missing_value = "x-forwarded-for")]
    pub trust_proxy: Option<crate::signal::web::ProxyHeader>,

    /// Do not answer STUN Binding requests on UDP at the --listen address and port.
    #[arg(long)]
    pub no_stun: bool,

    /// TURN server URL(s) to hand out to clients with short-lived credentials, e.g.
    /// turn:relay.example.org:3478. Needs --turn-secret.
    #[arg(long, value_delimiter = ',', value_name = "URL", requires = "turn_secret",
          value_parser = crate::signal::turn::parse_url)]
    pub turn: Vec<String>,

    /// Secret shared with the TURN server (coturn's static-auth-secret); prefer the
    /// environment variable, which `ps` does not show.
    #[arg(
        long,
        env = "MP_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,

    /// Seconds a handed-out TURN credential stays valid.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(60..=7 * 86_400))]
    pub turn_ttl: u64,
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

    /// Also trust the certificates in this PEM file as roots for a wss:// signaling server
    /// (a private CA, or a server's self-signed certificate), besides the public web CAs.
    #[arg(long, env = "MP_SIGNAL_CA", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub signal_ca: Option<PathBuf>,

    /// Only ever connect through a TURN relay, so the other side never learns this machine's
    /// address.
    #[arg(long, env = "MP_RELAY")]
    pub relay: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Files and folders to send, or `-` for standard input.
    #[arg(required_unless_present = "text", conflicts_with = "text", value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,

    /// Send this short text instead of files; the receiver prints it (`-`: read it from
    /// standard input).
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,

    /// The name the receiver gets for standard input (`mp send -`).
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub name: String,

    /// Leave out files and folders whose names the receiver would refuse (a control character,
    /// say) instead of stopping; each is named in a warning.
    #[arg(long)]
    pub skip_unsafe: bool,

    /// Use this code instead of a generated one (`<number>-<anything>`).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Do not draw the QR code of the link on the terminal.
    #[arg(long)]
    pub no_qr: bool,
    /// Also write the QR code of the link to FILE, as SVG or PNG (by its extension), with the
    /// code written beneath, for printing.
    #[arg(long, value_name = "FILE")]
    pub qr: Option<PathBuf>,

    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The code the sender printed, e.g. 7-guitar-ocean, or the link it printed
    /// (http://host:port/#7-guitar-ocean), which also names the signaling server. Asked for on
    /// the terminal when left out, so it does not show in the process list; MP_CODE for scripts.
    #[arg(env = "MP_CODE", hide_env_values = true, value_name = "CODE|LINK")]
    pub code: Option<String>,

    /// Read the code (or link) from the first line of FILE, `-` for standard input: for
    /// scripts that keep it in a file rather than in the environment.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, conflicts_with = "code")]
    pub code_file: Option<PathBuf>,

    /// Accept the offer without asking.
    #[arg(short, long)]
    pub yes: bool,

    /// Where to write: an existing folder, a new name for the single file or folder offered,
    /// or `-` for standard output (a single file or stream only).
    #[arg(short, long, value_name = "PATH", value_hint = ValueHint::AnyPath)]
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
tar c dir | mp send - --name dir.tar\n  mp send --text 'the wifi password is hunter2'\n  \
mp send --qr code.png report.pdf\n\nThe link (and its QR code) opens the web page of the signaling \
server with the code after the #, which browsers never send to a server: a phone can receive \
with no mp installed.\n\n{}",
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
