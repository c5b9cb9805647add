//! Load for `mp signal`, used by `bench/run` (loopback only, bounded in count and time).
//!
//! ```text
//! signal_load URL hold N SECONDS   open N waiting clients (one per room), hold them SECONDS,
//!                                  print "connected N" once all are joined
//! signal_load URL pair N           pair N sender/receiver couples one after another, 32 at a
//!                                  time; print "pairings_per_second X"
//! ```
//!
//! Only loopback URLs are accepted.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Everything this tool does must end within this time.
const DEADLINE: Duration = Duration::from_secs(300);

async fn join(url: &str, room: u64, side: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let join = format!(r#"{{"type":"join","room":"{room}","side":"{side}"}}"#);
    ws.send(Message::text(join)).await?;
    expect(&mut ws, "joined").await?;
    Ok(ws)
}

async fn expect(ws: &mut Ws, what: &str) -> anyhow::Result<()> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains(&format!(r#""{what}""#)) => {
                return Ok(())
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => anyhow::bail!("expected {what}, got {other:?}"),
        }
    }
}

async fn hold(url: String, clients: u64, seconds: u64) -> anyhow::Result<()> {
    let mut open = Vec::with_capacity(clients as usize);
    // Join in batches so the listen backlog is not overrun.
    for batch in (0..clients).collect::<Vec<_>>().chunks(256) {
        let joins = batch.iter().map(|&i| join(&url, 100_000 + i, "send"));
        for ws in futures_util::future::join_all(joins).await {
            open.push(ws?);
        }
    }
    println!("connected {}", open.len());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}

async fn pair_once(url: &str, room: u64) -> anyhow::Result<()> {
    let mut sender = join(url, room, "send").await?;
    let mut receiver = join(url, room, "receive").await?;
    expect(&mut sender, "paired").await?;
    expect(&mut receiver, "paired").await?;
    sender.send(Message::binary(vec![1u8; 64])).await?;
    match receiver.next().await {
        Some(Ok(Message::Binary(_))) => {}
        other => anyhow::bail!("relay failed: {other:?}"),
    }
    let _ = sender.close(None).await;
    let _ = receiver.close(None).await;
    Ok(())
}

async fn pair(url: String, pairs: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut next = 0;
    while next < pairs {
        let batch: Vec<u64> = (next..(next + 32).min(pairs)).collect();
        next += batch.len() as u64;
        let runs = batch.iter().map(|&i| pair_once(&url, 200_000 + i));
        for result in futures_util::future::join_all(runs).await {
            result?;
        }
    }
    let rate = pairs as f64 / start.elapsed().as_secs_f64();
    println!("pairings_per_second {rate:.0}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: signal_load URL (hold N SECONDS | pair N)";
    let url = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?.clone();
    let host = url
        .trim_start_matches("ws://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    anyhow::ensure!(
        host == "localhost" || host.starts_with("127.") || url.starts_with("ws://[::1]"),
        "only loopback URLs: {url}"
    );
    let number = |i: usize| -> anyhow::Result<u64> {
        Ok(args.get(i).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let work = async {
            match args.get(2).map(String::as_str) {
                Some("hold") => hold(url, number(3)?.min(50_000), number(4)?.min(120)).await,
                Some("pair") => pair(url, number(3)?.min(100_000)).await,
                _ => anyhow::bail!(usage),
            }
        };
        tokio::time::timeout(DEADLINE, work)
            .await
            .map_err(|_| anyhow::anyhow!("gave up after {DEADLINE:?}"))?
    })
}
