//! Loss recovery under random packet loss: when the receiver SACKs and how the sender
//! detects and repairs holes (RFC 9260 §6.7, §7.2.4, §6.3.1).

use super::*;

/// A receiving association and one DATA chunk for it: `len` bytes at `tsn` on stream 0.
fn data(tsn: u32, len: usize) -> ChunkPayloadData {
    ChunkPayloadData {
        beginning_fragment: true,
        ending_fragment: true,
        unordered: true,
        tsn,
        stream_identifier: 0,
        user_data: Bytes::from(vec![0u8; len]),
        ..Default::default()
    }
}

/// Feeds one packet carrying a DATA chunk, as `handle_inbound` would, and reports what the
/// receiver decided about its SACK. Any SACK it asked for is then sent, as a flush would.
fn receive(a: &mut Association, tsn: u32, now: Instant) -> Result<AckState> {
    a.handle_chunk_start();
    a.handle_data(&data(tsn, 100))?;
    a.handle_chunk_end(now);
    let decided = a.ack_state;
    a.gather_outbound_sack_packets(vec![]);
    Ok(decided)
}

fn receiver() -> Association {
    let mut a = create_association(TransportConfig::default());
    a.set_state(AssociationState::Established);
    a
}

#[test]
fn receiver_sacks_at_once_for_a_gap_and_for_the_chunk_that_fills_it() -> Result<()> {
    let now = Instant::now();
    let mut a = receiver();
    let first = a.peer_last_tsn.wrapping_add(1);

    // In sequence: the first packet may wait for the delayed-ACK timer (RFC 9260 §6.2).
    assert_eq!(AckState::Delay, receive(&mut a, first, now)?);
    a.timers.stop(Timer::Ack);
    a.ack_state = AckState::Idle;

    // first+1 is lost: each packet above the hole is reported at once (§6.7).
    assert_eq!(AckState::Immediate, receive(&mut a, first + 2, now)?);
    assert_eq!(AckState::Immediate, receive(&mut a, first + 3, now)?);

    // The retransmission fills the hole: the sender waits for this SACK, so it must not
    // wait for the 200 ms delayed-ACK timer.
    assert_eq!(AckState::Immediate, receive(&mut a, first + 1, now)?);
    assert_eq!(a.peer_last_tsn, first + 3);
    assert!(a.timers.get(Timer::Ack).is_none());

    // Back in sequence, delayed SACKs resume.
    assert_eq!(AckState::Delay, receive(&mut a, first + 4, now)?);
    Ok(())
}

#[test]
fn receiver_sacks_a_duplicate_at_once() -> Result<()> {
    let now = Instant::now();
    let mut a = receiver();
    let first = a.peer_last_tsn.wrapping_add(1);
    assert_eq!(AckState::Delay, receive(&mut a, first, now)?);
    a.timers.stop(Timer::Ack);
    a.ack_state = AckState::Idle;
    // A second copy of a delivered chunk (e.g. a T3-rtx retransmission that crossed our
    // SACK): RFC 9260 §6.7 says MUST SACK immediately.
    assert_eq!(AckState::Immediate, receive(&mut a, first, now)?);
    Ok(())
}

#[test]
fn the_chunk_that_empties_the_send_queue_asks_for_an_immediate_sack() -> Result<()> {
    let now = Instant::now();
    let mut a = timed_test_association();
    a.cwnd = 64 * 1024;
    a.rwnd = 1024 * 1024;
    let ppi = PayloadProtocolIdentifier::Binary;
    let mut stream = a.open_stream(1, ppi)?;
    for _ in 0..3 {
        stream.write_sctp(now, &Bytes::from(vec![0x5a; 1024]), ppi)?;
    }
    let sent = transmitted_data(&a.gather_outbound(now).0);
    // Only the last: the peer SACKs a burst at its second packet anyway.
    assert_eq!(
        vec![false, false, true],
        sent.iter().map(|c| c.immediate_sack).collect::<Vec<_>>()
    );

    // A window that stops the queue short sets no I bit: more data follows the SACK.
    let mut stream = a.stream(1)?;
    for _ in 0..3 {
        stream.write_sctp(now, &Bytes::from(vec![0x5a; 1024]), ppi)?;
    }
    a.cwnd = a.inflight_queue.get_num_bytes() as u32 + 2 * 1024;
    let sent = transmitted_data(&a.gather_outbound(now).0);
    assert_eq!(2, sent.len());
    assert!(sent.iter().all(|c| !c.immediate_sack));

    // The receiving side answers a lone chunk with the I bit at once, not after 200 ms.
    let mut b = receiver();
    let mut lone = data(b.peer_last_tsn.wrapping_add(1), 100);
    lone.immediate_sack = true;
    b.handle_chunk_start();
    b.handle_data(&lone)?;
    b.handle_chunk_end(now);
    assert_eq!(AckState::Immediate, b.ack_state);
    Ok(())
}

/// A sender with `count` one-chunk messages of 1 KiB in flight; returns the first TSN.
fn sender(count: usize) -> Result<(Association, Instant, u32)> {
    let mut a = timed_test_association();
    a.cwnd = 64 * 1024;
    a.rwnd = 1024 * 1024;
    let now = Instant::now();
    let first = a.my_next_tsn;
    let ppi = PayloadProtocolIdentifier::Binary;
    let mut stream = a.open_stream(1, ppi)?;
    for _ in 0..count {
        stream.write_sctp(now, &Bytes::from(vec![0x5a; 1024]), ppi)?;
    }
    assert_eq!(transmitted_data(&a.gather_outbound(now).0).len(), count);
    Ok((a, now, first))
}

/// A SACK with cumulative TSN `cum` and gap blocks covering the inclusive TSN ranges given.
fn sack(cum: u32, acked: &[(u32, u32)]) -> ChunkSelectiveAck {
    use crate::chunk::chunk_selective_ack::GapAckBlock;
    ChunkSelectiveAck {
        cumulative_tsn_ack: cum,
        advertised_receiver_window_credit: 1024 * 1024,
        gap_ack_blocks: acked
            .iter()
            .map(|&(start, end)| GapAckBlock {
                start: start.wrapping_sub(cum) as u16,
                end: end.wrapping_sub(cum) as u16,
            })
            .collect(),
        ..Default::default()
    }
}

fn miss(a: &Association, tsn: u32) -> u32 {
    a.inflight_queue.get(tsn).unwrap().miss_indicator
}

#[test]
fn one_coalesced_sack_reporting_three_later_chunks_triggers_fast_retransmit() -> Result<()> {
    let (mut a, now, first) = sender(8)?;
    // `first` is lost; a receiver that coalesced its SACKs reports first+1..=first+3 at once.
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 3)]), now)?;
    assert_eq!(3, miss(&a, first), "three chunks above the hole arrived");
    assert!(a.in_fast_recovery);
    let resent = transmitted_data(&a.gather_outbound(now).0);
    assert_eq!(first, resent[0].tsn, "the hole is fast-retransmitted first");
    Ok(())
}

#[test]
fn miss_indications_count_only_newly_acknowledged_chunks_above_the_hole() -> Result<()> {
    let (mut a, now, first) = sender(8)?;
    a.handle_sack(&sack(first - 1, &[(first + 2, first + 2)]), now)?;
    // first and first+1 are both below the one newly acknowledged TSN.
    assert_eq!((1, 1), (miss(&a, first), miss(&a, first + 1)));
    // The same report again acknowledges nothing new: no indication (HTNA).
    a.handle_sack(&sack(first - 1, &[(first + 2, first + 2)]), now)?;
    assert_eq!((1, 1), (miss(&a, first), miss(&a, first + 1)));
    // first+3 and first+4 arrive: two more indications each, not one.
    a.handle_sack(&sack(first - 1, &[(first + 2, first + 4)]), now)?;
    assert_eq!((3, 3), (miss(&a, first), miss(&a, first + 1)));
    assert_eq!(0, miss(&a, first + 5), "nothing above first+5 was reported");
    Ok(())
}

#[test]
fn in_fast_recovery_only_holes_the_sack_reports_gain_indications() -> Result<()> {
    let (mut a, now, first) = sender(10)?;
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 3)]), now)?;
    assert!(a.in_fast_recovery);
    // The retransmission of `first` arrives; first+4 is missing, first+5 arrives, and
    // first+6..=first+9 are still in flight, so this SACK says nothing about them.
    a.handle_sack(&sack(first + 3, &[(first + 5, first + 5)]), now)?;
    assert_eq!(1, miss(&a, first + 4));
    for tsn in first + 6..=first + 9 {
        assert_eq!(0, miss(&a, tsn), "tsn {tsn} was not reported missing");
    }
    Ok(())
}

#[test]
fn fast_recovery_lasts_until_the_highest_outstanding_tsn_is_acknowledged() -> Result<()> {
    let (mut a, now, first) = sender(10)?;
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 3)]), now)?;
    assert!(a.in_fast_recovery);
    let cwnd = a.cwnd;
    // The hole is repaired, passing the HTNA (first+3) but not the rest of the window,
    // where first+5 is now reported missing.
    a.handle_sack(&sack(first + 4, &[(first + 6, first + 8)]), now)?;
    assert!(a.in_fast_recovery, "first+9 was outstanding at entry");
    assert_eq!(cwnd, a.cwnd, "one loss event, one reduction");
    a.handle_sack(&sack(first + 9, &[]), now)?;
    assert!(!a.in_fast_recovery);
    Ok(())
}

#[test]
fn marked_chunks_beyond_the_first_packet_are_resent_as_cwnd_allows() -> Result<()> {
    let (mut a, now, first) = sender(20)?;
    // A burst of five lost chunks, then six that arrived.
    a.handle_sack(&sack(first - 1, &[(first + 5, first + 10)]), now)?;
    assert!(a.in_fast_recovery);
    // Room for the first packet (sent regardless of cwnd) and two more chunks: the lost
    // chunks are not counted as in flight, the ones resent are.
    a.cwnd = (20 - 6 - 5 + 1 + 2) * 1024;
    let resent: Vec<u32> = transmitted_data(&a.gather_outbound(now).0)
        .iter()
        .map(|c| c.tsn)
        .collect();
    assert_eq!(vec![first, first + 1, first + 2], resent);
    // Nothing more until cwnd opens; then the rest, before any new data.
    assert!(transmitted_data(&a.gather_outbound(now).0).is_empty());
    let ppi = PayloadProtocolIdentifier::Binary;
    a.stream(1)?
        .write_sctp(now, &Bytes::from(vec![1; 1024]), ppi)?;
    a.cwnd += 3 * 1024;
    let sent: Vec<u32> = transmitted_data(&a.gather_outbound(now).0)
        .iter()
        .map(|c| c.tsn)
        .collect();
    assert_eq!(vec![first + 3, first + 4], sent[..2]);
    assert_eq!(
        a.stats.get_num_fast_retrans(),
        5,
        "each lost chunk fast-retransmitted once"
    );
    Ok(())
}

#[test]
fn a_lost_retransmission_is_resent_once_three_chunks_sent_after_it_are_acknowledged() -> Result<()>
{
    let (mut a, now, first) = sender(8)?;
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 3)]), now)?;
    assert!(a.in_fast_recovery);
    let cwnd = a.cwnd;
    let resent = transmitted_data(&a.gather_outbound(now).0);
    assert_eq!(first, resent[0].tsn, "first fast retransmission");
    // New data goes out after the retransmission.
    let ppi = PayloadProtocolIdentifier::Binary;
    for _ in 0..4 {
        a.stream(1)?
            .write_sctp(now, &Bytes::from(vec![1; 1024]), ppi)?;
    }
    let sent: Vec<u32> = transmitted_data(&a.gather_outbound(now).0)
        .iter()
        .map(|c| c.tsn)
        .collect();
    assert_eq!(vec![first + 8, first + 9, first + 10, first + 11], sent);
    // Chunks with higher TSNs but sent before the retransmission say nothing about it.
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 7)]), now)?;
    assert_eq!(0, miss(&a, first));
    assert!(transmitted_data(&a.gather_outbound(now).0).is_empty());
    // Two chunks sent after it arrive: not yet enough (DupThresh is 3).
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 9)]), now)?;
    assert_eq!(2, miss(&a, first));
    // A third: the retransmission was lost too. It is resent at once, without waiting for
    // the T3-rtx timer, and without a second cwnd reduction in the same recovery.
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 10)]), now)?;
    let again = transmitted_data(&a.gather_outbound(now).0);
    assert_eq!(vec![first], again.iter().map(|c| c.tsn).collect::<Vec<_>>());
    assert_eq!(3, a.inflight_queue.get(first).unwrap().nsent);
    assert_eq!(cwnd, a.cwnd, "one loss event, one reduction");
    assert_eq!(0, a.stats.get_num_t3timeouts());
    Ok(())
}

#[test]
fn a_lost_timer_retransmission_is_detected_by_sending_order_too() -> Result<()> {
    let (mut a, now, first) = sender(4)?;
    // The whole window is lost; T3-rtx resends it at cwnd = 1 MTU, lowest TSN first.
    a.on_retransmission_timeout(Timer::T3RTX, 1, now);
    let resent = transmitted_data(&a.gather_outbound(now).0);
    assert_eq!(first, resent[0].tsn);
    // Later T3-rtx rounds and new data: make room and send four new chunks after it.
    a.cwnd = 64 * 1024;
    let ppi = PayloadProtocolIdentifier::Binary;
    for _ in 0..3 {
        a.stream(1)?
            .write_sctp(now, &Bytes::from(vec![1; 1024]), ppi)?;
    }
    let sent: Vec<u32> = transmitted_data(&a.gather_outbound(now).0)
        .iter()
        .map(|c| c.tsn)
        .collect();
    assert!(
        sent.ends_with(&[first + 4, first + 5, first + 6]),
        "{sent:?}"
    );
    // Everything sent after `first`'s retransmission arrives; `first` does not.
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 6)]), now)?;
    let again: Vec<u32> = transmitted_data(&a.gather_outbound(now).0)
        .iter()
        .map(|c| c.tsn)
        .collect();
    assert_eq!(vec![first], again, "resent without a second timeout");
    Ok(())
}

#[test]
fn in_fast_recovery_a_new_hole_gains_indications_while_the_cumulative_tsn_stands_still()
-> Result<()> {
    let (mut a, now, first) = sender(10)?;
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 3)]), now)?;
    assert!(a.in_fast_recovery);
    // The hole at `first` is repaired; first+4 is now the lowest hole.
    a.handle_sack(&sack(first + 3, &[(first + 5, first + 5)]), now)?;
    assert_eq!(1, miss(&a, first + 4));
    // Later chunks arrive, one SACK each, while the cumulative TSN stays at first+3: each is
    // an HTNA miss indication for first+4 (RFC 9260 §7.2.4), in fast recovery or not.
    a.handle_sack(&sack(first + 3, &[(first + 5, first + 6)]), now)?;
    assert_eq!(2, miss(&a, first + 4));
    a.handle_sack(&sack(first + 3, &[(first + 5, first + 7)]), now)?;
    assert_eq!(3, miss(&a, first + 4));
    assert!(a.in_fast_recovery);
    let resent: Vec<u32> = transmitted_data(&a.gather_outbound(now).0)
        .iter()
        .map(|c| c.tsn)
        .collect();
    assert_eq!(Some(&(first + 4)), resent.first(), "{resent:?}");
    assert_eq!(0, a.stats.get_num_t3timeouts());
    Ok(())
}

/// A client association whose INIT is queued at `now`, or a server one.
fn endpoint(server: bool, now: Instant) -> Association {
    let addr = SocketAddr::from_str("0.0.0.0:0").unwrap();
    Association::new(
        server.then(|| Arc::new(ServerConfig::default())),
        Arc::new(TransportConfig::default()),
        1400,
        if server { 2 } else { 1 },
        addr,
        addr,
        TransportProtocol::UDP,
        now,
    )
}

/// Hands every packet `from` has to send to `to`, both at `at`; with `lose`, drops them.
fn deliver(from: &mut Association, to: &mut Association, at: Instant, lose: bool) -> Result<()> {
    while let Some(transmit) = from.poll_transmit(at) {
        let Payload::RawEncode(raws) = transmit.message else {
            continue;
        };
        for raw in raws {
            if !lose {
                to.handle_inbound(Packet::unmarshal(&raw)?, at)?;
            }
        }
    }
    Ok(())
}

#[test]
fn the_handshake_round_trip_is_the_first_rtt_measurement() -> Result<()> {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut client = endpoint(false, t0);
    let mut server = endpoint(true, t0);
    assert_eq!(
        client.rto_mgr.get_rto(),
        1000,
        "RTO.initial before any measurement"
    );

    deliver(&mut client, &mut server, ms(1), false)?; // INIT
    deliver(&mut server, &mut client, ms(2), false)?; // INIT-ACK: the client times its INIT
    // A first DATA chunk lost now would wait RTO.min (200 ms), not RTO.initial (1 s).
    assert_eq!(client.rto_mgr.get_rto(), 200);
    assert_eq!(client.rto_mgr.srtt, 2);
    deliver(&mut client, &mut server, ms(3), false)?; // COOKIE-ECHO: the server times its INIT-ACK
    assert_eq!(server.state(), AssociationState::Established);
    assert_eq!(server.rto_mgr.get_rto(), 200);
    assert_eq!(server.rto_mgr.srtt, 2);
    deliver(&mut server, &mut client, ms(4), false)?; // COOKIE-ACK
    assert_eq!(client.state(), AssociationState::Established);
    assert_eq!(client.rto_mgr.get_rto(), 200);
    Ok(())
}

#[test]
fn a_retransmitted_handshake_chunk_is_not_timed() -> Result<()> {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut client = endpoint(false, t0);
    let mut server = endpoint(true, t0);

    // The first INIT arrives late, after T1-init has sent a second one: the server answers
    // both, and the client cannot tell which INIT an INIT-ACK answers (Karn).
    let Payload::RawEncode(first_init) = client.poll_transmit(ms(0)).expect("INIT").message else {
        panic!("an encoded INIT");
    };
    client.handle_timeout(ms(1001));
    deliver(&mut client, &mut server, ms(1001), false)?; // the second INIT
    for raw in first_init {
        server.handle_inbound(Packet::unmarshal(&raw)?, ms(1002))?; // the first, late
    }
    deliver(&mut server, &mut client, ms(1003), false)?; // two INIT-ACKs
    assert_eq!(
        client.rto_mgr.get_rto(),
        1000,
        "an INIT sent twice is not timed"
    );

    deliver(&mut client, &mut server, ms(1004), false)?; // COOKIE-ECHO, sent once
    assert_eq!(server.state(), AssociationState::Established);
    assert_eq!(
        server.rto_mgr.get_rto(),
        1000,
        "either INIT-ACK may have been answered"
    );
    deliver(&mut server, &mut client, ms(1005), false)?; // COOKIE-ACK times the COOKIE-ECHO
    assert_eq!(client.state(), AssociationState::Established);
    assert_eq!(client.rto_mgr.get_rto(), 200);
    Ok(())
}

#[test]
fn a_lost_tail_is_probed_after_pto_instead_of_waiting_for_t3_rtx() -> Result<()> {
    // Three chunks and nothing more to send. The first is lost; the two after it are
    // reported, which is one indication short of fast retransmit, and no more will come.
    let (mut a, now, first) = sender(3)?;
    let cwnd = a.cwnd;
    a.handle_sack(&sack(first - 1, &[(first + 1, first + 2)]), now)?;
    assert_eq!(2, miss(&a, first));
    assert!(!a.in_fast_recovery);
    let t3 = a.timers.get(Timer::T3RTX).expect("T3-rtx runs");
    let probe_at = a.poll_timeout().expect("a timeout");
    assert_eq!(probe_at, now + Duration::from_millis(TLP_MIN_PTO));
    assert!(probe_at < t3, "the probe comes before T3-rtx");

    a.handle_timeout(probe_at);
    let sent = transmitted_data(&a.gather_outbound(probe_at).0);
    assert_eq!(1, sent.len(), "one probe");
    assert_eq!(first, sent[0].tsn, "the highest chunk not yet acknowledged");
    assert!(sent[0].immediate_sack, "its SACK is wanted at once");
    assert_eq!(0, a.stats.get_num_t3timeouts());
    assert_eq!(
        a.cwnd,
        ((f64::from(cwnd) * 0.7) as u32).max(4 * a.mtu),
        "a loss costs what fast retransmit costs"
    );

    // One probe at a time: none again until a SACK acknowledges new data.
    assert!(a.tlp_at.is_none());
    a.handle_sack(&sack(first + 2, &[]), probe_at)?;
    assert!(a.tlp_at.is_none(), "nothing is outstanding");
    Ok(())
}

#[test]
fn a_single_outstanding_chunk_is_left_to_t3_rtx() -> Result<()> {
    // RFC 8985 §7.2: with one segment in flight the probe would wait for the peer's delayed
    // SACK as well, which is no sooner than T3-rtx.
    let (mut a, now, first) = sender(3)?;
    a.handle_sack(&sack(first + 1, &[]), now)?;
    assert!(a.tlp_at.is_none());
    Ok(())
}

#[test]
fn no_probe_while_data_waits_to_be_sent() -> Result<()> {
    // Queued data will follow: the chunks sent after a loss reveal it (fast retransmit).
    let (mut a, now, first) = sender(3)?;
    a.cwnd = a.inflight_queue.get_num_bytes() as u32;
    let ppi = PayloadProtocolIdentifier::Binary;
    a.stream(1)?
        .write_sctp(now, &Bytes::from(vec![0x5a; 1024]), ppi)?;
    a.handle_sack(&sack(first, &[]), now)?;
    assert!(a.tlp_at.is_none());
    Ok(())
}

#[test]
fn a_loss_cuts_the_window_no_lower_than_the_measured_bandwidth_delay_product() -> Result<()> {
    let (mut a, mut now, _) = sender(1)?;
    // Nothing measured yet: CUBIC's cut.
    a.cwnd = 1_000_000;
    a.reduce_cwnd_on_loss();
    assert_eq!(a.cwnd, 700_000);

    // The path delivered 16 MB/s with a least round trip of 50 ms: 800 kB in flight.
    let rtt = Duration::from_millis(50);
    a.bdp.on_rtt(rtt, now);
    for _ in 0..20 {
        now += rtt;
        a.bdp.on_delivered(800_000, rtt, now);
    }
    a.cwnd = 1_000_000;
    a.reduce_cwnd_on_loss();
    assert_eq!(
        (a.cwnd, a.ssthresh),
        (800_000, 800_000),
        "cut to the path's product"
    );
    // Never above the window the sender had.
    a.cwnd = 600_000;
    a.reduce_cwnd_on_loss();
    assert_eq!(a.cwnd, 600_000);
    // A window far over the product (a full queue) gets CUBIC's cut when that is more.
    a.cwnd = 2_000_000;
    a.reduce_cwnd_on_loss();
    assert_eq!(a.cwnd, 1_400_000);
    // T3-rtx takes ssthresh from the same floor, cwnd from one MTU.
    a.cwnd = 1_000_000;
    a.on_retransmission_timeout(Timer::T3RTX, 1, now);
    assert_eq!((a.cwnd, a.ssthresh), (a.mtu, 800_000));
    Ok(())
}
