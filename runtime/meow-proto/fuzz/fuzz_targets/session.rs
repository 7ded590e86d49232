//! Session handshake: a server answering arbitrary hellos, a client reading arbitrary replies, and
//! arbitrary frames on an established session.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::ServerKey;
use meow_proto::session::{self, ClientHandshake};
use meow_proto::testing::TestRng;

fuzz_target!(|data: &[u8]| {
    let mut rng = TestRng::new(1);
    let server = ServerKey::from_secret_bytes([5; 32]);
    let _ = session::accept(&server, data, &mut rng);
    let (hs, hello) = ClientHandshake::start(&server.public(), &mut rng).unwrap();
    let _ = ClientHandshake::start(&server.public(), &mut rng)
        .unwrap()
        .0
        .finish(data);
    let (mut s, reply) = session::accept(&server, &hello, &mut rng).unwrap();
    let _c = hs.finish(&reply).unwrap();
    let _ = s.open_in_place(&mut data.to_vec());
});
