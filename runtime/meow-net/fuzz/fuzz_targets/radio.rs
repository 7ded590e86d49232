//! The decoders of serial and radio links, on bytes a device or an attacker on the air sends:
//! the KISS decoder and its CRC check, Meshtastic's stream framing and `FromRadio` reader,
//! fragment reassembly, and link addresses as a user types them. None may panic; whatever
//! comes out must respect its bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meow_net::port::{LinkAddress, PortPeer};
use meow_net::radio::fragment::{self, Reassembly};
use meow_net::radio::kiss;
use meow_net::radio::meshtastic::{self, StreamDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            let mut d = kiss::Decoder::new(600);
            for chunk in rest.chunks(7) {
                d.feed(chunk, |f| {
                    assert!(f.data.len() <= 600);
                    let _ = kiss::open_checked(&f);
                    // What decodes re-encodes to the same frame.
                    let again = kiss::encode(f.command, &f.data);
                    let mut d2 = kiss::Decoder::new(600);
                    let mut n = 0;
                    d2.feed(&again, |g| {
                        assert_eq!(g, f);
                        n += 1;
                    });
                    assert_eq!(n, 1);
                });
            }
        }
        1 => {
            let mut d = StreamDecoder::default();
            for chunk in rest.chunks(13) {
                d.feed(chunk, |frame| {
                    assert!(frame.len() <= meshtastic::MAX_FRAME);
                    let _ = meshtastic::read_from_radio(&frame);
                });
            }
            let _ = meshtastic::read_from_radio(rest);
        }
        2 => {
            let mut r = Reassembly::default();
            let mut now = 0;
            for piece in rest.split(|&b| b == 0xAA) {
                now += 1000;
                let peer = PortPeer::Node(u32::from(piece.len() as u8 & 3));
                if let Some(d) = r.push(peer, piece.to_vec(), now) {
                    assert!(d.len() <= fragment::max_datagram(233).max(piece.len()));
                }
            }
            if let Ok(frames) = fragment::split(rest, 64, 7) {
                let mut r = Reassembly::default();
                let out: Vec<Vec<u8>> = frames.into_iter().filter_map(|f| r.push(PortPeer::Line, f, 0)).collect();
                assert_eq!(out, vec![rest.to_vec()]);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = LinkAddress::parse(s);
            }
        }
    }
});
