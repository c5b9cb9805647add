//! `mp`: parse the command line, run one command, map failures to one line and an exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use mp::cli::{Cli, Command, NetArgs};
use mp::error::{self, fail, Failure, Kind};
use mp::transfer::NetOptions;
use mp::{prompt, signal, transfer, ui};

fn main() -> ExitCode {
    tune_malloc();
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
                _ = tokio::signal::ctrl_c() => if transfer::handles_interrupt() {
                    transfer::forward_interrupt();
                } else {
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
            let turn = match args.turn_secret.filter(|_| !args.turn.is_empty()) {
                Some(secret) if secret.is_empty() => {
                    return Err(fail(Kind::Usage, "--turn-secret must not be empty"));
                }
                Some(secret) => Some(std::sync::Arc::new(signal::turn::Turn {
                    urls: args.turn,
                    secret,
                    ttl: Duration::from_secs(args.turn_ttl),
                })),
                None => None,
            };
            let tls = match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(signal::tls::server_config(cert, key)?),
                _ => None,
            };
            // Redis first: an instance that cannot share its rooms must not take clients.
            let redis = match args.redis.as_deref() {
                Some(url) => Some(signal::backplane::Backplane::connect(url).await.map_err(
                    |why| fail(Kind::Server, format!("cannot use Redis (--redis): {why}")),
                )?),
                None => None,
            };
            let listeners = signal::server::bind(args.listen, !args.no_stun)
                .await
                .map_err(|e| {
                    fail(
                        Kind::Server,
                        format!("cannot listen on {}: {e}", args.listen),
                    )
                })?;
            let local = listeners.tcp.local_addr()?;
            // Each client is one open file: the descriptor limit, not --max-clients, would
            // otherwise decide how many are served, and the rest would time out unanswered.
            let scheme = if tls.is_some() { "wss" } else { "ws" };
            eprintln!("mp signal: listening on {scheme}://{local}");
            let mut max_clients = args.max_clients;
            let mut max_handshakes = args.max_handshakes;
            if let Some(open_files) = signal::server::raise_open_files() {
                let (clients, handshakes) =
                    signal::server::share_open_files(open_files, max_clients, max_handshakes);
                if clients < max_clients {
                    eprintln!(
                        "mp signal: serving at most {clients} clients, not {max_clients}: \
                         the open-file limit is {open_files} (raise the hard limit: \
                         ulimit -Hn, or LimitNOFILE= for systemd)"
                    );
                }
                (max_clients, max_handshakes) = (clients, handshakes);
            }
            if listeners.stun.is_some() {
                eprintln!("mp signal: answering STUN on udp {local}");
            }
            if let Some(turn) = &turn {
                eprintln!(
                    "mp signal: handing out TURN credentials for {}",
                    turn.urls.join(", ")
                );
            }
            if redis.is_some() {
                eprintln!("mp signal: keeping rooms in Redis, shared with other instances");
            }
            let config = signal::server::Config {
                room_timeout: Duration::from_secs(args.room_timeout),
                wait_timeout: Duration::from_secs(args.wait_timeout),
                drain_timeout: Duration::from_secs(args.drain_timeout),
                max_clients,
                max_handshakes,
                max_handshakes_per_addr: args.max_handshakes_per_addr,
                handshake_timeout: Duration::from_secs(args.handshake_timeout),
                max_waiting_per_addr: args.max_waiting_per_addr,
                joins_per_minute: args.joins_per_minute,
                turn,
                redis: redis.clone(),
                tls,
                trust_proxy: args.trust_proxy,
                ..Default::default()
            };
            let drain = config.drain_timeout;
            let lost_redis = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop = {
                let lost_redis = lost_redis.clone();
                async move {
                    let lost = async {
                        match &redis {
                            Some(redis) => redis.lost().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = terminated() => {}
                        _ = lost => {
                            lost_redis.store(true, std::sync::atomic::Ordering::Relaxed);
                            eprintln!("mp signal: lost the connection to Redis");
                        }
                    }
                    eprintln!(
                        "mp signal: stopping: no new clients; open rooms may finish (at most {} s)",
                        drain.as_secs()
                    );
                }
            };
            signal::server::run(listeners, config, stop).await?;
            if lost_redis.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(fail(
                    Kind::Server,
                    "stopped: lost the connection to Redis (--redis)",
                ));
            }
            eprintln!("mp signal: stopped");
            Ok(())
        }
        Command::Send(args) => {
            let (net, hint) = net_options(args.net)?;
            if let Some(file) = args.qr.as_deref() {
                if mp::qr::extension(file).is_none() {
                    return Err(fail(
                        Kind::Usage,
                        format!(
                            "--qr {}: the file name must end in .svg or .png",
                            ui::shown(file)
                        ),
                    ));
                }
            }
            let ui = ui.with_qr(ui::QrOptions {
                page: signal::web::page_url(&net.signal),
                show: !args.no_qr,
                file: args.qr,
            });
            let what = match (args.text, args.paths.as_slice()) {
                (Some(text), _) if text == "-" => transfer::send::What::Text(read_text().await?),
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
                skip_unsafe: args.skip_unsafe,
            };
            transfer::send::run(send, ui).await
        }
        Command::Receive(mut args) => {
            // The code as given, or asked for on the terminal (so it is not in `ps`).
            let mut code = match (args.code.take(), &args.code_file) {
                (Some(code), _) => code,
                (None, Some(file)) => prompt::read_code(file)?,
                (None, None) => prompt::ask_code().await?,
            };
            // A link names the server and carries the code; --signal on the command line
            // still wins over the link, the link over MP_SIGNAL.
            if let Some((signal, from_link)) = signal::web::parse_link(&code) {
                let given = args.net.signal.as_ref();
                if given.is_none_or(|s| std::env::var("MP_SIGNAL").is_ok_and(|v| &v == s)) {
                    args.net.signal = Some(signal);
                }
                code = from_link;
            }
            let (net, _) = net_options(args.net)?;
            let receive = transfer::receive::ReceiveArgs {
                net,
                code,
                output: args.output,
                yes: args.yes,
                overwrite: args.overwrite,
            };
            transfer::receive::run(receive, ui).await
        }
        Command::Partial { dir, remove } => transfer::partial::run(&dir, remove, &ui),
    }
}

/// The text of `--text -`: standard input, up to the limit (more is refused by the sender).
async fn read_text() -> anyhow::Result<String> {
    let read = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut text = String::new();
        let limit = mp::protocol::message::MAX_TEXT as u64 + 1;
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_string(&mut text)
            .map(|_| text)
    })
    .await?;
    read.map_err(|e| error::local_io("cannot read the text from standard input", e))
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
    if let Some(ca) = &args.signal_ca {
        signal::tls::trust(ca)?;
    }
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
            sctp_mtu: sctp_mtu()?,
            ice_servers: ice_servers(&args.stun, &args.turn, args.turn_user, args.turn_password),
            relay: args.relay,
        },
        hint,
    ))
}

/// The SCTP packet size to start from, from `MP_SCTP_MTU` (tuning, for measurements; not a
/// flag). Path MTU discovery still raises it up to `peer::MAX_SCTP_PATH_MTU`.
fn sctp_mtu() -> anyhow::Result<Option<u32>> {
    let Ok(text) = std::env::var("MP_SCTP_MTU") else {
        return Ok(None);
    };
    match text.parse::<u32>() {
        Ok(mtu) if (512..=16_000).contains(&mtu) => Ok(Some(mtu)),
        _ => Err(fail(
            Kind::Usage,
            format!("MP_SCTP_MTU={text:?}: expected a packet size from 512 to 16000 bytes"),
        )),
    }
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

/// Resolves on SIGTERM (a service manager stopping `mp signal`); never where there is none.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

/// One glibc malloc arena for the whole process instead of up to eight per core. The file
/// reader allocates frames that the network threads free, and with an arena per thread each
/// kept its own high-water mark: the sender's peak RSS on a 1 GiB LAN transfer went from
/// 40-42 MiB to 33-35 MiB (receiver 17-18 to 15-16) with this, at the same CPU time. mp has
/// a handful of threads, so the shared arena's lock is not contended.
///
/// And that arena keeps up to 8 MiB of freed memory instead of giving it back to the kernel
/// at once. Each 256 KiB message is reassembled into a fresh buffer that the file writer
/// frees; glibc's own thresholds (mmap above ~256 KiB, trim the heap's top above twice that)
/// returned those pages to the kernel after a message or two, and the next message faulted
/// them in again, zeroed: on a 1 GiB LAN receive that was 6% of the receiver's CPU in page
/// faults and 1% in `brk` shrinking. Peak RSS is unchanged (the pages were in use at the
/// peak anyway).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Setting either threshold turns off glibc's adjusting of both, so both are set:
        // messages and frames (256 KiB and a little) come from the heap, not from mmap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}
