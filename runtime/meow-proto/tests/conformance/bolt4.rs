//! BOLT #4's published onion test vector, run through MEOW's own Sphinx code on secp256k1: the
//! construction is generic over its group, so matching Lightning byte for byte on their curve
//! checks every step MEOW takes on X25519 (key derivation, filler, HMAC chain, blinding).

use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::group::GroupEncoding;
use k256::{AffinePoint, ProjectivePoint, Scalar};
use meow_proto::crypto::CryptoError;
use meow_proto::crypto::onion::OnionGroup;
use meow_proto::onion::sphinx::{self, Hop, Onion};

/// secp256k1 with SEC1 compressed points: BOLT #4's group.
struct Secp256k1;

fn scalar(bytes: &[u8; 32]) -> Result<Scalar, CryptoError> {
    Option::from(Scalar::from_repr((*bytes).into())).ok_or(CryptoError::BadPublicKey)
}

impl OnionGroup for Secp256k1 {
    const POINT_LEN: usize = 33;

    fn public(s: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        Ok((ProjectivePoint::GENERATOR * scalar(s)?)
            .to_affine()
            .to_bytes()
            .to_vec())
    }

    fn multiply(point: &[u8], s: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        let encoded: [u8; 33] = point.try_into().map_err(|_| CryptoError::BadPublicKey)?;
        let p: Option<AffinePoint> = AffinePoint::from_bytes(&encoded.into()).into();
        let p = p.ok_or(CryptoError::BadPublicKey)?;
        Ok((ProjectivePoint::from(p) * scalar(s)?).to_affine().to_bytes().to_vec())
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn array(s: &str) -> [u8; 32] {
    hex(s).try_into().unwrap()
}

/// Drops the `bigsize` length prefix the vector's payloads carry (our API adds it).
fn strip_length(p: &[u8]) -> &[u8] {
    match p[0] {
        0xfd => &p[3..],
        0xfe => &p[5..],
        0xff => &p[9..],
        _ => &p[1..],
    }
}

#[test]
fn bolt4_onion_vector_on_secp256k1() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../vectors/external/bolt04-onion-test.json")).unwrap();
    let g = &v["generate"];
    let session = array(g["session_key"].as_str().unwrap());
    let assoc = hex(g["associated_data"].as_str().unwrap());
    let hops: Vec<(Vec<u8>, Vec<u8>)> = g["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let payload = hex(h["payload"].as_str().unwrap());
            (hex(h["pubkey"].as_str().unwrap()), strip_length(&payload).to_vec())
        })
        .collect();
    let route: Vec<Hop<'_>> = hops.iter().map(|(public, payload)| Hop { public, payload }).collect();
    let onion = sphinx::construct::<Secp256k1>(&session, &route, &assoc, 1300).unwrap();
    let mut ours = vec![0u8]; // BOLT #4's version byte
    ours.extend_from_slice(&onion.point);
    ours.extend_from_slice(&onion.field);
    ours.extend_from_slice(&onion.hmac);
    let expected = hex(v["onion"].as_str().unwrap());
    assert_eq!(ours.len(), 1366);
    assert!(ours == expected, "our onion differs from BOLT #4's");

    // Each hop peels its layer with its private key and reads exactly its payload.
    let mut packet = Some(Onion {
        point: expected[1..34].to_vec(),
        field: expected[34..1334].to_vec(),
        hmac: expected[1334..].try_into().unwrap(),
    });
    for (i, secret) in v["decode"].as_array().unwrap().iter().enumerate() {
        let here = packet.take().expect("a packet for every hop");
        let peeled = sphinx::peel::<Secp256k1>(&array(secret.as_str().unwrap()), &here, &assoc).unwrap();
        assert_eq!(peeled.payload, hops[i].1, "hop {i} payload");
        packet = peeled.next;
    }
    assert!(packet.is_none(), "the last hop sees the zero HMAC");
}

#[test]
fn a_changed_byte_is_refused_by_the_first_hop() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../vectors/external/bolt04-onion-test.json")).unwrap();
    let mut raw = hex(v["onion"].as_str().unwrap());
    raw[500] ^= 0x80;
    let onion = Onion {
        point: raw[1..34].to_vec(),
        field: raw[34..1334].to_vec(),
        hmac: raw[1334..].try_into().unwrap(),
    };
    let assoc = hex(v["generate"]["associated_data"].as_str().unwrap());
    let first = array(v["decode"][0].as_str().unwrap());
    assert!(matches!(
        sphinx::peel::<Secp256k1>(&first, &onion, &assoc),
        Err(sphinx::SphinxError::BadMac)
    ));
}
