//! The inbound path without copies: records taken as slices of the datagram's buffer, AES-GCM
//! decrypted in place, application data handed on as the part of the buffer that held it. Each
//! test checks that a datagram gets exactly the treatment the copying path gave it.

use super::*;
use crate::cipher_suite::cipher_suite_aes_128_ccm::CipherSuiteAes128Ccm;
use crate::cipher_suite::cipher_suite_aes_128_gcm_sha256::CipherSuiteAes128GcmSha256;
use crate::cipher_suite::{CipherSuite, CipherSuiteId};
use crate::client_certificate_type::ClientCertificateType;
use crate::crypto::crypto_ccm::CryptoCcmTagLen;
use crate::crypto::crypto_gcm::CryptoGcm;

const MASTER_SECRET: [u8; 48] = [7u8; 48];
const CLIENT_RANDOM: [u8; 32] = [1u8; 32];
const SERVER_RANDOM: [u8; 32] = [2u8; 32];

fn provider() -> Arc<dyn crypto::RTCCryptoProvider> {
    crypto::default_provider().expect("a built-in crypto provider is enabled for tests")
}

fn gcm_suite(is_client: bool) -> Box<dyn CipherSuite> {
    let mut cs = Box::new(CipherSuiteAes128GcmSha256::new(false));
    cs.init(
        provider(),
        &MASTER_SECRET,
        &CLIENT_RANDOM,
        &SERVER_RANDOM,
        is_client,
    )
    .unwrap();
    cs
}

fn ccm_suite(is_client: bool) -> Box<dyn CipherSuite> {
    let mut cs = Box::new(CipherSuiteAes128Ccm::new(
        ClientCertificateType::EcdsaSign,
        CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm,
        false,
        CryptoCcmTagLen::CryptoCcmTagLength,
    ));
    cs.init(
        provider(),
        &MASTER_SECRET,
        &CLIENT_RANDOM,
        &SERVER_RANDOM,
        is_client,
    )
    .unwrap();
    cs
}

/// A server whose handshake has completed, reading epoch 1 with `suite`.
fn established_server(suite: Box<dyn CipherSuite>) -> DTLSConn {
    let config = Arc::new(HandshakeConfig::new(provider()));
    let mut conn = DTLSConn::new(config, false, None);
    conn.state.cipher_suite = Some(suite);
    conn.state.remote_epoch = 1;
    conn.set_handshake_completed();
    conn
}

/// One record as the client would send it: header, then `payload` protected by `suite`.
fn record(
    suite: &mut Box<dyn CipherSuite>,
    content_type: ContentType,
    epoch: u16,
    seq: u64,
    payload: &[u8],
) -> Vec<u8> {
    let header = RecordLayerHeader {
        content_type,
        protocol_version: PROTOCOL_VERSION1_2,
        epoch,
        sequence_number: seq,
        content_len: payload.len() as u16,
    };
    let mut raw = vec![];
    header.marshal(&mut raw).unwrap();
    raw.extend_from_slice(payload);
    if epoch == 0 {
        raw
    } else {
        suite.encrypt(&header, &raw).unwrap()
    }
}

fn app_record(suite: &mut Box<dyn CipherSuite>, seq: u64, payload: &[u8]) -> Vec<u8> {
    record(suite, ContentType::ApplicationData, 1, seq, payload)
}

fn drain(conn: &mut DTLSConn) -> Vec<BytesMut> {
    std::iter::from_fn(|| conn.incoming_application_data()).collect()
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn gcm_in_place_equals_copying_decrypt() {
    let mut client = gcm_suite(true);
    for n in [0, 1, 15, 16, 17, 1187, 16384] {
        let rec = app_record(&mut client, 5, &payload(n, 3));
        let expected = gcm_suite(false).decrypt(&rec).unwrap();
        let mut in_place = BytesMut::from(&rec[..]);
        gcm_suite(false).decrypt_in_place(&mut in_place).unwrap();
        assert_eq!(&in_place[..], &expected[..], "payload of {n} bytes");
        assert_eq!(&in_place[RECORD_LAYER_HEADER_SIZE..], &payload(n, 3)[..]);
    }
}

#[test]
fn gcm_in_place_does_not_move_the_plaintext() {
    let mut client = gcm_suite(true);
    let rec = app_record(&mut client, 5, &payload(1000, 9));
    let mut buf = BytesMut::from(&rec[..]);
    let start = buf.as_ptr() as usize;
    gcm_suite(false).decrypt_in_place(&mut buf).unwrap();
    // header | nonce | ciphertext | tag  ->  header | plaintext, in the same memory.
    assert_eq!(buf.as_ptr() as usize, start + 8);
    assert_eq!(buf.len(), RECORD_LAYER_HEADER_SIZE + 1000);
}

#[test]
fn gcm_in_place_rejects_what_decrypt_rejects() {
    let mut client = gcm_suite(true);
    let good = app_record(&mut client, 5, &payload(100, 1));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![];
    for (name, at) in [
        ("header (AAD)", 4),
        ("explicit nonce", RECORD_LAYER_HEADER_SIZE + 2),
        ("ciphertext", RECORD_LAYER_HEADER_SIZE + 8 + 50),
        ("tag", good.len() - 1),
    ] {
        let mut r = good.clone();
        r[at] ^= 0x40;
        cases.push((name, r));
    }
    // Just a header, header and part of the explicit nonce, header and the whole nonce,
    // and a nonce with less than a tag after it.
    for len in [
        RECORD_LAYER_HEADER_SIZE,
        RECORD_LAYER_HEADER_SIZE + 4,
        RECORD_LAYER_HEADER_SIZE + 8,
        RECORD_LAYER_HEADER_SIZE + 8 + 15,
    ] {
        cases.push(("short", good[..len].to_vec()));
    }
    cases.push(("shorter than a header", good[..5].to_vec()));

    for (name, r) in cases {
        assert!(gcm_suite(false).decrypt(&r).is_err(), "{name}: decrypt");
        let mut buf = BytesMut::from(&r[..]);
        assert!(
            gcm_suite(false).decrypt_in_place(&mut buf).is_err(),
            "{name}: decrypt_in_place accepted what decrypt rejects"
        );
    }
}

#[test]
fn gcm_in_place_leaves_change_cipher_spec_alone() {
    let ccs = record(
        &mut gcm_suite(true),
        ContentType::ChangeCipherSpec,
        0,
        3,
        &[1],
    );
    let mut buf = BytesMut::from(&ccs[..]);
    gcm_suite(false).decrypt_in_place(&mut buf).unwrap();
    assert_eq!(&buf[..], &ccs[..]);
    assert_eq!(gcm_suite(false).decrypt(&ccs).unwrap(), ccs);
}

#[test]
fn crypto_gcm_in_place_with_the_same_keys_as_the_sender() {
    let (key, iv) = ([0x11u8; 16], [0x22u8; 4]);
    let mut cg = CryptoGcm::new(provider(), &key, &iv, &key, &iv).unwrap();
    let rec = app_record(&mut gcm_suite(true), 1, b"x");
    // Sealed with other keys: rejected, never a panic.
    assert!(cg.decrypt_in_place(&mut BytesMut::from(&rec[..])).is_err());
}

#[test]
fn default_in_place_for_other_suites_equals_decrypt() {
    let mut client = ccm_suite(true);
    let rec = app_record(&mut client, 2, &payload(300, 4));
    let expected = ccm_suite(false).decrypt(&rec).unwrap();
    let mut buf = BytesMut::from(&rec[..]);
    ccm_suite(false).decrypt_in_place(&mut buf).unwrap();
    assert_eq!(&buf[..], &expected[..]);
}

#[test]
fn single_record_datagram_is_delivered_from_its_own_buffer() {
    let mut client = gcm_suite(true);
    let mut conn = established_server(gcm_suite(false));
    let rec = app_record(&mut client, 1, &payload(1100, 5));
    let datagram = BytesMut::from(&rec[..]);
    let range = datagram.as_ptr() as usize..datagram.as_ptr() as usize + datagram.len();

    conn.read_datagram(datagram).unwrap();
    let got = drain(&mut conn);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][..], &payload(1100, 5)[..]);
    assert!(
        range.contains(&(got[0].as_ptr() as usize)),
        "the application data was copied out of the datagram"
    );
}

#[test]
fn two_record_datagram_delivers_both_in_order() {
    let mut client = gcm_suite(true);
    let mut conn = established_server(gcm_suite(false));
    let mut datagram = app_record(&mut client, 1, &payload(500, 1));
    datagram.extend_from_slice(&app_record(&mut client, 2, &payload(600, 2)));

    conn.read(&datagram).unwrap();
    let got = drain(&mut conn);
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0][..], &payload(500, 1)[..]);
    assert_eq!(&got[1][..], &payload(600, 2)[..]);
}

#[test]
fn datagram_with_a_truncated_record_is_rejected_whole() {
    let mut client = gcm_suite(true);
    let mut conn = established_server(gcm_suite(false));
    let mut datagram = app_record(&mut client, 1, &payload(500, 1));
    let second = app_record(&mut client, 2, &payload(600, 2));
    datagram.extend_from_slice(&second[..second.len() - 1]);

    assert!(matches!(
        conn.read(&datagram),
        Err(Error::ErrInvalidPacketLength)
    ));
    assert!(
        drain(&mut conn).is_empty(),
        "a record before the bad one was used"
    );

    // A header with nothing after it, and a lone partial header.
    for bad in [&second[..RECORD_LAYER_HEADER_SIZE], &second[..7]] {
        assert!(matches!(conn.read(bad), Err(Error::ErrInvalidPacketLength)));
    }
    assert!(drain(&mut conn).is_empty());
}

#[test]
fn tampered_short_and_replayed_records_are_dropped_silently() {
    let mut client = gcm_suite(true);
    let mut conn = established_server(gcm_suite(false));

    let good = app_record(&mut client, 1, &payload(200, 1));
    let mut tampered = app_record(&mut client, 2, &payload(200, 2));
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let mut short = app_record(&mut client, 3, &payload(0, 3));
    // A body of 8 + 15 bytes: room for the explicit nonce, not for the tag.
    short.truncate(RECORD_LAYER_HEADER_SIZE + 8 + 15);
    short[RECORD_LAYER_HEADER_SIZE - 1] = 8 + 15;

    for datagram in [&good, &tampered, &short, &good] {
        conn.read(datagram).unwrap();
    }
    let got = drain(&mut conn);
    assert_eq!(got.len(), 1, "only the first copy of the good record");
    assert_eq!(&got[0][..], &payload(200, 1)[..]);
    assert!(
        conn.outgoing_packets.is_empty(),
        "a dropped record was answered"
    );

    // A failed record does not mark its sequence number as seen: the genuine one still counts.
    conn.read(&app_record(&mut client, 2, &payload(200, 2)))
        .unwrap();
    assert_eq!(drain(&mut conn).len(), 1);
}

#[test]
fn other_epochs_keep_their_treatment() {
    let mut client = gcm_suite(true);
    let mut conn = established_server(gcm_suite(false));

    // Next epoch after the handshake: discarded, not queued.
    let future = record(&mut client, ContentType::ApplicationData, 2, 1, b"x");
    conn.read(&future).unwrap();
    assert!(conn.incoming_encrypted_packets.is_empty());
    // Old-epoch (plaintext) application data after the handshake: discarded, not answered.
    let old = record(&mut client, ContentType::ApplicationData, 0, 1, b"plain");
    conn.read(&old).unwrap();
    assert!(drain(&mut conn).is_empty());
    assert!(conn.outgoing_packets.is_empty());

    // Before the handshake completes, plaintext application data is a fatal error.
    let config = Arc::new(HandshakeConfig::new(provider()));
    let mut fresh = DTLSConn::new(config, false, None);
    assert!(matches!(fresh.read(&old), Err(Error::ErrAlertFatalOrClose)));
    assert!(drain(&mut fresh).is_empty());
    assert_eq!(fresh.outgoing_packets.len(), 1);
    assert!(matches!(
        &fresh.outgoing_packets[0].record.content,
        Content::Alert(Alert {
            alert_level: AlertLevel::Fatal,
            alert_description: AlertDescription::UnexpectedMessage,
        })
    ));
}

#[test]
fn encrypted_alert_still_takes_the_general_path() {
    let mut client = gcm_suite(true);
    let mut conn = established_server(gcm_suite(false));
    // A close_notify, protected: answered and reported as the peer closing.
    let alert = record(&mut client, ContentType::Alert, 1, 1, &[1, 0]);
    let mut datagram = app_record(&mut client, 2, b"last words");
    datagram.extend_from_slice(&alert);
    assert!(matches!(
        conn.read(&datagram),
        Err(Error::ErrAlertFatalOrClose)
    ));
    assert!(conn.closed_by_peer);
    assert_eq!(&drain(&mut conn)[0][..], b"last words");
}

#[test]
fn record_count_agrees_with_unpack_datagram() {
    let mut client = gcm_suite(true);
    let a = app_record(&mut client, 1, b"a");
    let b = app_record(&mut client, 2, &payload(300, 0));
    let mut ab = a.clone();
    ab.extend_from_slice(&b);
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        a.clone(),
        ab.clone(),
        ab[..ab.len() - 1].to_vec(),
        ab[..a.len() + RECORD_LAYER_HEADER_SIZE].to_vec(),
        ab[..a.len() + 3].to_vec(),
        a[..RECORD_LAYER_HEADER_SIZE].to_vec(),
        vec![0x17],
    ];
    for input in inputs {
        let copied = unpack_datagram(&input);
        let counted = datagram_record_count(&input);
        match (copied, counted) {
            (Ok(v), Ok(n)) => assert_eq!(v.len(), n),
            (Err(e1), Err(e2)) => assert_eq!(e1, e2),
            (x, y) => panic!("disagree on {input:?}: {:?} vs {y:?}", x.map(|v| v.len())),
        }
    }
}
