//! `mp`: parse the command line, run one command, map failures to one line and an exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use mp::cli::{Cli, Command, NetArgs};
use mp::error::{self, fail, Failure, Kind};
use mp::transfer::NetOptions;
use mp::{generate, signal, transfer, ui};

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("mp: internal error: {info} (please report this)");
    }));
    let cli = Cli::parse();
    let stdout_is_data = match &cli.command {
        Command::Receive(args) => args.output.as_deref() == Some(std::path::Path::new("-")),
        _ => false,
    };
    let ui = ui::Ui::new(cli.quiet, cli.json, stdout_is_data);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mp: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let run = run(cli, ui.clone());
        tokio::pin!(run);
        loop {
            tokio::select! {
                result = &mut run => break result,
                // A transfer under way handles Ctrl-C itself, to tell the peer and keep what
                // it received; anywhere else, stop at once.
                _ = tokio::signal::ctrl_c() => if !transfer::handles_interrupt() {
                    break Err(fail(Kind::Interrupted, "interrupted"));
                },
            }
        }
    });
    // Do not wait for lingering background tasks (a WebRTC driver, a blocked reader).
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let failure = Failure::from_any(err);
            ui.failure(&failure);
            ExitCode::from(failure.kind.exit_code())
        }
    }
}

async fn run(cli: Cli, ui: ui::Ui) -> anyhow::Result<()> {
    match cli.command {
        Command::Signal(args) => {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| {
                    fail(
                        Kind::Server,
                        format!("cannot listen on {}: {e}", args.listen),
                    )
                })?;
            let local = listener.local_addr()?;
            eprintln!("mp signal: listening on ws://{local}");
            let config = signal::server::Config {
                room_timeout: Duration::from_secs(args.room_timeout),
                max_clients: args.max_clients,
                ..Default::default()
            };
            signal::server::serve(listener, config).await?;
            Ok(())
        }
        Command::Send(args) => {
            let (net, hint) = net_options(args.net)?;
            let what = match (args.text, args.paths.as_slice()) {
                (Some(text), _) => transfer::send::What::Text(text),
                (None, [single]) if single.as_os_str() == "-" => {
                    transfer::send::What::Stdin(args.name)
                }
                (None, paths) if paths.iter().any(|p| p.as_os_str() == "-") => {
                    return Err(fail(Kind::Usage, "`-` (stdin) must be the only thing sent"));
                }
                (None, _) => transfer::send::What::Paths(args.paths),
            };
            let send = transfer::send::SendArgs {
                net,
                what,
                code: args.code,
                signal_hint: hint,
            };
            transfer::send::run(send, ui).await
        }
        Command::Receive(args) => {
            let (net, _) = net_options(args.net)?;
            let receive = transfer::receive::ReceiveArgs {
                net,
                code: args.code,
                output: args.output,
                yes: args.yes,
                overwrite: args.overwrite,
            };
            transfer::receive::run(receive, ui).await
        }
        Command::Generate { dir } => generate::write_all(&dir)
            .map_err(|e| error::local_io(&format!("cannot write into {}", dir.display()), e)),
    }
}

/// How long to wait for the other side when `--timeout` is not given.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// Resolves the shared network options; also returns the URL to show in the receive hint when
/// it did not come from the environment.
///
/// Without a signaling server the meeting place is the local network: `signal` then holds
/// [`mp::rendezvous::lan::Options`] as a place (`lan:…`), which `rendezvous::join` reads, and
/// the receiver needs no hint.
fn net_options(args: NetArgs) -> anyhow::Result<(NetOptions, Option<String>)> {
    let timeout = args.timeout.map(Duration::from_secs);
    let (signal, hint) = match args.signal {
        Some(signal) => {
            signal::client::check_url(&signal)?;
            let from_env = std::env::var("MP_SIGNAL").is_ok_and(|v| v == signal);
            let hint = (!from_env).then(|| signal.clone());
            (signal, hint)
        }
        None => {
            let lan = mp::rendezvous::lan::Options {
                bind: args.bind.clone(),
                discovery: timeout.unwrap_or(mp::rendezvous::lan::DISCOVERY),
            };
            (lan.to_place(), None)
        }
    };
    Ok((
        NetOptions {
            signal,
            wait: timeout.unwrap_or(DEFAULT_WAIT),
            bind: args.bind,
            sctp_mtu: args.sctp_mtu,
            ice_servers: ice_servers(&args.stun, &args.turn, args.turn_user, args.turn_password),
            relay: args.relay,
        },
        hint,
    ))
}

/// The STUN and TURN servers given with --stun and --turn.
fn ice_servers(
    stun: &[String],
    turn: &[String],
    user: Option<String>,
    password: Option<String>,
) -> Vec<mp::rendezvous::IceServer> {
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(mp::rendezvous::IceServer {
            urls: stun.to_vec(),
            ..Default::default()
        });
    }
    if !turn.is_empty() {
        servers.push(mp::rendezvous::IceServer {
            urls: turn.to_vec(),
            username: user.unwrap_or_default(),
            credential: password.unwrap_or_default(),
        });
    }
    servers
}
