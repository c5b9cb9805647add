//! A delay line between two network namespaces, for the long-path case of `bench/run` (the
//! benchmark machine has no netem, nor any other queueing discipline).
//!
//! ```text
//! delay_wire NAME_A NAME_B DELAY_MS SECONDS [QUEUE_MIB]
//! ```
//!
//! Creates two TUN devices, NAME_A and NAME_B (MTU 1500), prints `ready`, then copies every IP
//! packet read from one to the other DELAY_MS milliseconds later, both ways: a round trip takes
//! 2 × DELAY_MS.
//!
//! With `DELAY_WIRE_NO_OFFLOAD` set in its environment the devices take no offloads: every
//! packet crosses alone (about a core at 65 MB/s), so that loss applied behind the line drops
//! single packets, not whole batches.
//!
//! Otherwise the devices take segmentation offloads (virtio-net headers, `TUNSETOFFLOAD`), as a veth does:
//! a UDP GSO batch of up to 64 KiB, or a TCP super-packet, crosses the line whole, and is cut
//! into MTU-sized packets only where the receiving socket does not take it whole (UDP GRO). The
//! line's CPU then grows with batches, not packets, so the delay line no longer competes with
//! the tools it measures for the machine's cores (per packet it took about a core at 65 MB/s). Like a router's buffer, a direction that already holds QUEUE_MIB (default 64)
//! of packets drops the next one. The caller moves the devices into its namespaces and gives
//! them the two ends of a point-to-point link. Exits after SECONDS, or when its standard input
//! closes; the devices go with it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: delay_wire NAME_A NAME_B DELAY_MS SECONDS [QUEUE_MIB]");
        std::process::exit(2);
    }
    let number = |i: usize, what: &str| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!(
                "delay_wire: {what} must be a whole number, not {:?}",
                args[i]
            );
            std::process::exit(2)
        })
    };
    let delay = Duration::from_millis(number(3, "DELAY_MS"));
    let lifetime = Duration::from_secs(number(4, "SECONDS"));
    let queue = args.get(5).map(|_| number(5, "QUEUE_MIB")).unwrap_or(64) as usize * 1024 * 1024;

    let open = |name: &str| {
        let mut config = tun::Configuration::default();
        config.tun_name(name).mtu(1500);
        config.platform_config(|p| {
            p.vnet_hdr(true);
        });
        let device = tun::create(&config).unwrap_or_else(|e| {
            eprintln!("delay_wire: cannot create TUN device {name}: {e}");
            std::process::exit(1)
        });
        take_offloads(&device, name);
        device
    };
    let (read_a, write_a) = open(&args[1]).split();
    let (read_b, write_b) = open(&args[2]).split();
    line(read_a, write_b, delay, queue);
    line(read_b, write_a, delay, queue);
    println!("ready");
    std::io::stdout().flush().ok();

    // Bounded: standard input closing or the lifetime ending, whichever comes first.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    std::thread::sleep(lifetime);
}

/// Asks the kernel to hand the device whole GSO batches: checksum offload, TCP segmentation and
/// UDP segmentation (Linux 6.2 and later). An older kernel falls back to fewer offloads; every
/// packet then still carries its (empty) virtio-net header, which the line copies unread.
fn take_offloads(device: &tun::Device, name: &str) {
    use std::os::fd::AsRawFd;
    // _IOW('T', 208, unsigned int), from <linux/if_tun.h>; the libc crate does not name it.
    const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
    let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let offer: &[u32] = if std::env::var_os("DELAY_WIRE_NO_OFFLOAD").is_some() {
        &[0]
    } else {
        &[tcp | libc::TUN_F_USO4 | libc::TUN_F_USO6, tcp, 0]
    };
    for &flags in offer {
        // SAFETY: a TUN device's descriptor, and an integer argument, as the ioctl takes.
        if unsafe { libc::ioctl(device.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } == 0 {
            if flags & libc::TUN_F_USO4 == 0 {
                eprintln!("delay_wire: {name} takes no UDP segmentation offload; packets cross one by one");
            }
            return;
        }
    }
}

/// One direction: a reader that stamps each packet with its due time, and a writer that lets
/// it out then. The delay is the same for every packet, so the queue stays in due order.
fn line(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    delay: Duration,
    queue: usize,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let held = Arc::new(AtomicUsize::new(0));
    let held_in = held.clone();
    std::thread::spawn(move || {
        // A virtio-net header and a whole GSO batch (at most 64 KiB of IP packet).
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if held_in.load(Ordering::Relaxed) + n > queue {
                continue; // the buffer is full: drop, as a router would
            }
            held_in.fetch_add(n, Ordering::Relaxed);
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((due, packet)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // A failed write (the device going away, or a full device queue) drops the packet.
            let _ = to.write(&packet);
            held.fetch_sub(packet.len(), Ordering::Relaxed);
        }
    });
}
