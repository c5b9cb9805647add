// AES-GCM (Galois Counter Mode)
// The most widely used block cipher worldwide.
// Mandatory as of TLS 1.2 (2008) and used by default by most clients.
// RFC 5288 year 2008 https://tools.ietf.org/html/rfc5288

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};

use crypto::{AeadAlgorithm, AeadCipher, RTCCryptoProvider};

use super::*;
use crate::content::*;
use crate::record_layer::record_layer_header::*;
use shared::error::*;

const CRYPTO_GCM_TAG_LENGTH: usize = 16;
const CRYPTO_GCM_NONCE_LENGTH: usize = 12;

/// AES-GCM authenticated encryption for DTLS records, holding the per-direction keys.
pub struct CryptoGcm {
    provider: Arc<dyn RTCCryptoProvider>,
    local_gcm: Box<dyn AeadCipher>,
    remote_gcm: Box<dyn AeadCipher>,
    local_write_iv: Vec<u8>,
    remote_write_iv: Vec<u8>,
}

impl CryptoGcm {
    /// Builds the cipher from the local and remote keys and salts.
    pub fn new(
        provider: Arc<dyn RTCCryptoProvider>,
        local_key: &[u8],
        local_write_iv: &[u8],
        remote_key: &[u8],
        remote_write_iv: &[u8],
    ) -> Result<Self> {
        let local_gcm = provider
            .crypto()
            .new_aead(AeadAlgorithm::Aes128Gcm, local_key)
            .map_err(crypto_error)?;
        let remote_gcm = provider
            .crypto()
            .new_aead(AeadAlgorithm::Aes128Gcm, remote_key)
            .map_err(crypto_error)?;
        Ok(CryptoGcm {
            provider,
            local_gcm,
            local_write_iv: local_write_iv.to_vec(),
            remote_gcm,
            remote_write_iv: remote_write_iv.to_vec(),
        })
    }

    /// Protects one record, returning header plus ciphertext.
    ///
    /// # Errors
    ///
    /// Fails if the cipher rejects the input.
    pub fn encrypt(&mut self, pkt_rlh: &RecordLayerHeader, raw: &[u8]) -> Result<Vec<u8>> {
        let payload = &raw[RECORD_LAYER_HEADER_SIZE..];
        let mut r = BytesMut::with_capacity(
            RECORD_LAYER_HEADER_SIZE + 8 + payload.len() + CRYPTO_GCM_TAG_LENGTH,
        );
        r.extend_from_slice(&raw[..RECORD_LAYER_HEADER_SIZE]);
        self.seal_body(pkt_rlh, payload, &mut r)?;

        // Update recordLayer size to include explicit nonce
        let r_len = (r.len() - RECORD_LAYER_HEADER_SIZE) as u16;
        r[RECORD_LAYER_HEADER_SIZE - 2..RECORD_LAYER_HEADER_SIZE]
            .copy_from_slice(&r_len.to_be_bytes());

        Ok(r.to_vec())
    }

    /// Protects one record whose body is `payload`, appending header, explicit nonce,
    /// ciphertext and tag to `out`: one reservation, and the payload copied once, where
    /// [`encrypt`](Self::encrypt) takes an already marshalled record and returns a new one.
    /// `rlh.content_len` is ignored; the header written carries the protected length.
    ///
    /// # Errors
    ///
    /// Fails if the protected body would not fit a record's 16-bit length, or the cipher
    /// rejects the input.
    pub fn seal_record(
        &mut self,
        rlh: &RecordLayerHeader,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<()> {
        let body_len = 8 + payload.len() + CRYPTO_GCM_TAG_LENGTH;
        let content_len = u16::try_from(body_len).map_err(|_| Error::ErrOutboundPacketTooLarge)?;

        out.reserve(RECORD_LAYER_HEADER_SIZE + body_len);
        let header = RecordLayerHeader {
            content_len,
            ..*rlh
        };
        header.marshal(&mut out.writer())?;
        self.seal_body(rlh, payload, out)
    }

    /// Appends the explicit nonce, `payload` sealed in place, and the tag to `out`, which ends
    /// with the record's header: the part of a protected record that [`Self::encrypt`] and
    /// [`Self::seal_record`] share. The additional data is `rlh`'s, with `payload`'s length.
    fn seal_body(
        &mut self,
        rlh: &RecordLayerHeader,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<()> {
        let mut nonce = [0u8; CRYPTO_GCM_NONCE_LENGTH];
        nonce[..4].copy_from_slice(&self.local_write_iv[..4]);
        self.provider
            .random()
            .fill(&mut nonce[4..])
            .map_err(crypto_error)?;
        let additional_data = generate_aead_additional_data(rlh, payload.len());

        out.extend_from_slice(&nonce[4..]);
        let body = out.len();
        out.extend_from_slice(payload);

        let mut tag = [0; CRYPTO_GCM_TAG_LENGTH];
        self.local_gcm
            .seal_in_place(&nonce, &additional_data, &mut out[body..], &mut tag)
            .map_err(crypto_error)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Unprotects one record.
    ///
    /// # Errors
    ///
    /// Fails if authentication fails or the record is too short.
    pub fn decrypt(&mut self, r: &[u8]) -> Result<Vec<u8>> {
        let mut d = BytesMut::from(r);
        self.decrypt_in_place(&mut d)?;
        Ok(d.to_vec())
    }

    /// Unprotects one record in place, with no allocation and no copy of the payload.
    ///
    /// `r` holds one whole record, `header | explicit nonce | ciphertext | tag`. On success it
    /// holds `header | plaintext`, byte for byte what [`Self::decrypt`] returns for the same
    /// record: the plaintext is decrypted where the ciphertext lay, the 13 header bytes are
    /// moved up over the 8-byte explicit nonce, and the tag is cut off. On failure `r` is left
    /// in an unspecified state and the caller must drop it, as it drops a record that
    /// `decrypt` rejects; the same records are rejected, with the same errors.
    ///
    /// # Errors
    ///
    /// Fails if authentication fails or the record is too short.
    pub fn decrypt_in_place(&mut self, r: &mut BytesMut) -> Result<()> {
        let h = RecordLayerHeader::unmarshal(&mut &r[..])?;
        if h.content_type == ContentType::ChangeCipherSpec {
            // Nothing to decrypt with ChangeCipherSpec
            return Ok(());
        }

        const BODY: usize = RECORD_LAYER_HEADER_SIZE + 8;
        if r.len() <= BODY {
            return Err(Error::ErrNotEnoughRoomForNonce);
        }

        let mut nonce = [0u8; CRYPTO_GCM_NONCE_LENGTH];
        nonce[..4].copy_from_slice(&self.remote_write_iv[..4]);
        nonce[4..].copy_from_slice(&r[RECORD_LAYER_HEADER_SIZE..BODY]);

        let Some(tag_start) = (r.len() - BODY).checked_sub(CRYPTO_GCM_TAG_LENGTH) else {
            // Too short to hold the auth tag; the AEAD would reject it.
            return Err(Error::Other(
                "DTLS AES-GCM record too short for tag".to_string(),
            ));
        };

        let additional_data = generate_aead_additional_data(&h, tag_start);

        let (ciphertext, tag) = r[BODY..].split_at_mut(tag_start);
        self.remote_gcm
            .open_in_place(&nonce, &additional_data, ciphertext, tag)
            .map_err(authentication_error)?;

        // header | nonce | plaintext | tag  ->  header | plaintext
        r.copy_within(..RECORD_LAYER_HEADER_SIZE, 8);
        r.advance(8);
        r.truncate(RECORD_LAYER_HEADER_SIZE + tag_start);

        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_layer::record_layer_header::PROTOCOL_VERSION1_2;

    fn make_record(payload: &[u8]) -> (RecordLayerHeader, Vec<u8>) {
        let header = RecordLayerHeader {
            content_type: ContentType::ApplicationData,
            protocol_version: PROTOCOL_VERSION1_2,
            epoch: 1,
            sequence_number: 1,
            content_len: payload.len() as u16,
        };
        let mut raw = Vec::with_capacity(RECORD_LAYER_HEADER_SIZE + payload.len());
        header.marshal(&mut raw).unwrap();
        raw.extend_from_slice(payload);
        (header, raw)
    }

    #[test]
    fn test_crypto_gcm_roundtrip() {
        let local_key = [0x11u8; 16];
        let local_iv = [0x22u8; 4];
        let remote_key = [0x33u8; 16];
        let remote_iv = [0x44u8; 4];
        let provider = crypto::default_provider().unwrap();
        let mut sender = CryptoGcm::new(
            provider.clone(),
            &local_key,
            &local_iv,
            &remote_key,
            &remote_iv,
        )
        .unwrap();
        let mut receiver =
            CryptoGcm::new(provider, &remote_key, &remote_iv, &local_key, &local_iv).unwrap();

        let payload = b"application data!";
        let (header, raw) = make_record(payload);

        let encrypted = sender.encrypt(&header, &raw).unwrap();
        assert_eq!(
            encrypted.len(),
            RECORD_LAYER_HEADER_SIZE + 8 + payload.len() + CRYPTO_GCM_TAG_LENGTH,
            "header + explicit nonce + ciphertext + tag"
        );
        assert_ne!(
            &encrypted[RECORD_LAYER_HEADER_SIZE + 8..RECORD_LAYER_HEADER_SIZE + 8 + payload.len()],
            &payload[..],
            "payload must not be in the clear"
        );

        let decrypted = receiver.decrypt(&encrypted).unwrap();
        // The wire header is passed through as-is; its length field was
        // patched by encrypt to include the explicit nonce and tag.
        assert_eq!(
            &decrypted[..RECORD_LAYER_HEADER_SIZE - 2],
            &raw[..RECORD_LAYER_HEADER_SIZE - 2]
        );
        assert_eq!(&decrypted[RECORD_LAYER_HEADER_SIZE..], &payload[..]);
    }

    /// A record long enough to hold the explicit nonce but too short for the
    /// auth tag must fail cleanly instead of panicking.
    #[test]
    fn test_crypto_gcm_decrypt_too_short_for_tag() {
        let key = [0x11u8; 16];
        let iv = [0x22u8; 4];
        let mut cg =
            CryptoGcm::new(crypto::default_provider().unwrap(), &key, &iv, &key, &iv).unwrap();

        let (_, mut raw) = make_record(&[0u8; 0]);
        // 8-byte explicit nonce plus 10 bytes: less than the 16-byte tag.
        raw.extend_from_slice(&[0u8; 8 + 10]);

        assert!(cg.decrypt(&raw).is_err());
    }

    /// `seal_record` builds the record `encrypt` would (same header, same length, a body the
    /// peer opens to the same plaintext), appended after whatever `out` already holds; and a
    /// flipped ciphertext bit in it still fails authentication.
    #[test]
    fn test_crypto_gcm_seal_record_matches_encrypt() {
        let key = [0x11u8; 16];
        let iv = [0x22u8; 4];
        let mut sender =
            CryptoGcm::new(crypto::default_provider().unwrap(), &key, &iv, &key, &iv).unwrap();
        let mut receiver =
            CryptoGcm::new(crypto::default_provider().unwrap(), &key, &iv, &key, &iv).unwrap();

        for len in [0usize, 1, 15, 16, 17, 1200, 16_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (header, raw) = make_record(&payload);
            let encrypted = sender.encrypt(&header, &raw).unwrap();

            let mut out = BytesMut::from(&b"earlier"[..]);
            let stale = RecordLayerHeader {
                content_len: 9999,
                ..header
            };
            sender.seal_record(&stale, &payload, &mut out).unwrap();
            assert_eq!(&out[..7], b"earlier", "appended, not overwritten");
            let sealed = &out[7..];
            assert_eq!(sealed.len(), encrypted.len(), "len {len}");
            assert_eq!(
                &sealed[..RECORD_LAYER_HEADER_SIZE],
                &encrypted[..RECORD_LAYER_HEADER_SIZE],
                "the header, its length the protected body's (len {len})"
            );
            let opened = receiver.decrypt(sealed).unwrap();
            assert_eq!(&opened[RECORD_LAYER_HEADER_SIZE..], &payload[..]);

            if len > 0 {
                let mut tampered = sealed.to_vec();
                tampered[RECORD_LAYER_HEADER_SIZE + 8] ^= 1;
                assert!(receiver.decrypt(&tampered).is_err(), "len {len}");
            }
        }
    }

    /// A payload whose protected body would overflow the record's 16-bit length is refused,
    /// and nothing is appended.
    #[test]
    fn test_crypto_gcm_seal_record_refuses_an_oversized_payload() {
        let key = [0x11u8; 16];
        let iv = [0x22u8; 4];
        let mut cg =
            CryptoGcm::new(crypto::default_provider().unwrap(), &key, &iv, &key, &iv).unwrap();
        let (header, _) = make_record(b"");
        let mut out = BytesMut::new();
        let payload = vec![0u8; usize::from(u16::MAX) - 8 - CRYPTO_GCM_TAG_LENGTH + 1];
        assert!(cg.seal_record(&header, &payload, &mut out).is_err());
        assert!(out.is_empty());
    }

    /// Tampered ciphertext must fail authentication.
    #[test]
    fn test_crypto_gcm_decrypt_rejects_tampering() {
        let key = [0x11u8; 16];
        let iv = [0x22u8; 4];
        let mut cg =
            CryptoGcm::new(crypto::default_provider().unwrap(), &key, &iv, &key, &iv).unwrap();

        let (header, raw) = make_record(b"payload");
        let mut encrypted = cg.encrypt(&header, &raw).unwrap();
        let last = encrypted.len() - 1;
        encrypted[last] ^= 0xff;

        assert!(cg.decrypt(&encrypted).is_err());
    }
}
