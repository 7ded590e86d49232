//! Requests sealed one packet at a time, for connectionless links (serial, LoRa, UDP) where a
//! session handshake costs too much air time. Modelled on Oblivious HTTP (RFC 9458): the request
//! is HPKE-sealed to the server, and the response key is exported from the same HPKE context.
//!
//! ```text
//! request  = version:u8 (=1) | 'Q' | enc:[32] | HPKE_seal(ServerPublic, info "meow/v1/datagram",
//!                aad = the 2 header bytes, sent_at:varint (Unix s) | request)
//! response = version:u8 (=1) | 'R' | AES-GCM(export(ctx, "meow/v1/datagram-response"), nonce 0,
//!                aad = the 2 header bytes, response)
//! ```
//! Mailbox proofs in a datagram are bound to its `enc`. The server refuses requests whose
//! `sent_at` is more than [`MAX_SKEW_SECS`] away from its clock and remembers the `enc` of recent
//! ones, so a replayed datagram does nothing.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{AeadKey, CryptoRng, ENC_LEN, HpkeReceiver, HpkeSender, SecretKey};
use crate::keys::{ServerKey, ServerPublic};
use crate::session::SessionError;
use crate::wire::{Request, Response};

/// Datagram format version.
pub const DATAGRAM_VERSION: u8 = 1;
const REQUEST_HEADER: [u8; 2] = [DATAGRAM_VERSION, b'Q'];
const RESPONSE_HEADER: [u8; 2] = [DATAGRAM_VERSION, b'R'];
const INFO: &[u8] = b"meow/v1/datagram";
const RESPONSE_LABEL: &[u8] = b"meow/v1/datagram-response";
/// Largest clock difference accepted, seconds.
pub const MAX_SKEW_SECS: u64 = 120;

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Not a MEOW datagram of a known version.
    #[error("not a MEOW datagram")]
    BadHeader,
    /// Decryption failed.
    #[error("datagram does not decrypt")]
    Decrypt,
    /// The content does not decode.
    #[error("malformed datagram content: {0}")]
    Malformed(#[from] DecodeError),
    /// The request's time is too far from the server's clock.
    #[error("datagram timestamp outside the accepted window")]
    Stale,
    /// Setting up the seal failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A request opened by the server, with what it needs to answer.
#[derive(Debug)]
pub struct OpenedRequest {
    /// The request.
    pub request: Request,
    /// The sender's clock, Unix seconds.
    pub sent_at: u64,
    /// Mailbox proofs in this request are bound to this value.
    pub binding: [u8; 32],
    response_key: SecretKey,
}

impl OpenedRequest {
    /// Seals the response to this request.
    pub fn seal_response(&self, response: &Response) -> Vec<u8> {
        seal_response(&self.response_key, response)
    }
}

/// What a client keeps to read the response.
#[derive(Debug)]
pub struct PendingDatagram {
    /// Mailbox proofs must be bound to this value.
    pub binding: [u8; 32],
    response_key: SecretKey,
}

/// Client side, step 1: the binding for mailbox proofs and the HPKE context. Step 2 is
/// [`DatagramSender::seal_request`]. Split so proofs can be computed before the request is encoded.
#[derive(Debug)]
pub struct DatagramSender {
    enc: [u8; ENC_LEN],
    ctx: HpkeSender,
}

impl DatagramSender {
    /// Sets up a datagram to `server`.
    pub fn new(server: &ServerPublic, rng: &mut impl CryptoRng) -> Result<Self, DatagramError> {
        let (enc, ctx) = HpkeSender::new(server.as_bytes(), INFO, rng).map_err(SessionError::from)?;
        Ok(Self { enc, ctx })
    }

    /// The value mailbox proofs in this datagram must be bound to.
    pub fn binding(&self) -> [u8; 32] {
        self.enc
    }

    /// Seals the request; returns the datagram and what reads the response.
    pub fn seal_request(mut self, request: &Request, now_secs: u64) -> (Vec<u8>, PendingDatagram) {
        let mut w = Writer::new();
        w.varint(now_secs);
        request.encode(&mut w);
        let sealed = self.ctx.seal(&REQUEST_HEADER, w.as_slice());
        let mut out = Vec::with_capacity(2 + ENC_LEN + sealed.len());
        out.extend_from_slice(&REQUEST_HEADER);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(&sealed);
        let pending = PendingDatagram {
            binding: self.enc,
            response_key: self.ctx.export(RESPONSE_LABEL),
        };
        (out, pending)
    }
}

impl PendingDatagram {
    /// Opens the server's response.
    pub fn open_response(&self, datagram: &[u8]) -> Result<Response, DatagramError> {
        if datagram.len() < 2 || datagram[..2] != RESPONSE_HEADER {
            return Err(DatagramError::BadHeader);
        }
        let plain = AeadKey::new(&self.response_key)
            .open(&[0; 12], &RESPONSE_HEADER, &datagram[2..])
            .map_err(|_| DatagramError::Decrypt)?;
        Ok(Response::from_bytes(&plain)?)
    }
}

/// Server side: opens a request datagram and checks its time against `now_secs`.
pub fn open_request(server: &ServerKey, datagram: &[u8], now_secs: u64) -> Result<OpenedRequest, DatagramError> {
    if datagram.len() < 2 + ENC_LEN || datagram[..2] != REQUEST_HEADER {
        return Err(DatagramError::BadHeader);
    }
    let enc: [u8; ENC_LEN] = datagram[2..2 + ENC_LEN]
        .try_into()
        .map_err(|_| DatagramError::BadHeader)?;
    let mut ctx = HpkeReceiver::new(server.dh(), &enc, INFO).map_err(|_| DatagramError::Decrypt)?;
    let plain = ctx
        .open(&REQUEST_HEADER, &datagram[2 + ENC_LEN..])
        .map_err(|_| DatagramError::Decrypt)?;
    let mut r = Reader::new(&plain);
    let sent_at = r.varint("datagram time")?;
    if sent_at.abs_diff(now_secs) > MAX_SKEW_SECS {
        return Err(DatagramError::Stale);
    }
    let request = Request::decode(&mut r)?;
    r.finish("datagram request")?;
    Ok(OpenedRequest {
        request,
        sent_at,
        binding: enc,
        response_key: ctx.export(RESPONSE_LABEL),
    })
}

fn seal_response(key: &SecretKey, response: &Response) -> Vec<u8> {
    let mut out = RESPONSE_HEADER.to_vec();
    out.extend_from_slice(&AeadKey::new(key).seal(&[0; 12], &RESPONSE_HEADER, &response.to_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{self, ContentType, Message, MessageId};
    use crate::keys::{ContactKey, ConversationKey, LookupKey, MailboxId};
    use crate::padding::{LORA_CLASS, LORA_FRAME_MAX};
    use crate::testing::TestRng;
    use crate::wire::MailboxAuth;

    /// The byte accounting that docs/PROTOCOL.md §7 and BENCHMARKS.md state, for a 20-byte reading.
    #[test]
    fn a_20_byte_reading_deposits_in_one_lora_frame_with_the_documented_overhead() {
        let mut rng = TestRng::new(31);
        let server = ServerKey::generate(&mut rng);
        let sender = ContactKey::generate(&mut rng);
        let recipient = ConversationKey::generate(&mut rng);
        let reading = br#"{"t":21.50,"h":40.2}"#.to_vec();
        assert_eq!(reading.len(), 20);
        let message = Message {
            id: MessageId::random(&mut rng),
            sent_at_ms: 1_800_000_000_000,
            content_type: ContentType::JSON,
            content: reading,
            rotation: None,
            rotation_ack: None,
            automatic: false,
            reply_to: None,
        };
        // Message header: flags 1 + id 16 + time 6 + type 1 + content length 1.
        assert_eq!(message.to_bytes().len() - 20, 25);
        let env = envelope::seal(&message, &sender, &recipient.public(), &mut rng).unwrap();
        // version 1 + enc 32 + (body length 1 + body 45 + signature 64) + tag 16 = 159, padded to 176.
        assert_eq!(env.len(), LORA_CLASS);
        assert_eq!(LORA_CLASS, 176);
        // Version 2: version 1 + sealed ratchet header 80 + (body length 1 + body 45) + tag 16
        // = 143, padded to the same class, so the same 250 bytes on the air.
        let root = crate::crypto::SecretKey::generate(&mut rng);
        let peer = crate::crypto::DhSecret::generate(&mut rng).public();
        let mut ratchet =
            crate::ratchet::Ratchet::start_first(&root, crate::crypto::DhSecret::generate(&mut rng), peer).unwrap();
        assert_eq!(envelope::ENVELOPE_V2_OVERHEAD + 1 + 45, 143);
        let me = sender.public();
        let v2 = envelope::seal_v2(&message, &mut ratchet, &me, &me, &mut rng).unwrap();
        assert_eq!(v2.len(), LORA_CLASS);
        let req = Request::Deposit {
            mailbox: MailboxId([9; 16]),
            envelope: env,
        };
        let now = 1_800_000_000;
        let (dgram, pending) = DatagramSender::new(&server.public(), &mut rng)
            .unwrap()
            .seal_request(&req, now);
        // version 1 + 'Q' 1 + enc 32 + (time 5 + kind 1 + mailbox 16 + envelope length 2 + 176) + tag 16.
        assert_eq!(dgram.len(), 250);
        assert!(dgram.len() <= LORA_FRAME_MAX);

        let opened = open_request(&server, &dgram, now).unwrap();
        assert_eq!(opened.request, req);
        let resp = opened.seal_response(&Response::Deposited);
        assert!(resp.len() <= LORA_FRAME_MAX);
        assert_eq!(pending.open_response(&resp).unwrap(), Response::Deposited);
    }

    #[test]
    fn proofs_bind_to_the_datagram_and_stale_ones_are_refused() {
        let mut rng = TestRng::new(32);
        let server = ServerKey::generate(&mut rng);
        let lookup = LookupKey::generate(&mut rng);
        let sender = DatagramSender::new(&server.public(), &mut rng).unwrap();
        let auth = MailboxAuth::prove(&lookup, &sender.binding());
        let req = Request::Poll {
            mailboxes: vec![auth],
            limit: 10,
            wait_ms: 0,
            broadcasts_after: 0,
        };
        let (dgram, _) = sender.seal_request(&req, 1000);
        let opened = open_request(&server, &dgram, 1000).unwrap();
        let Request::Poll { mailboxes, .. } = &opened.request else {
            panic!("not a poll")
        };
        assert!(mailboxes[0].verify(&opened.binding));
        assert_eq!(
            open_request(&server, &dgram, 1000 + MAX_SKEW_SECS + 1).unwrap_err(),
            DatagramError::Stale
        );
        let mut bad = dgram.clone();
        bad[50] ^= 1;
        assert_eq!(open_request(&server, &bad, 1000).unwrap_err(), DatagramError::Decrypt);
    }
}
