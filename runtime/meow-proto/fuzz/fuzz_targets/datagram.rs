//! Per-packet sealed requests and responses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::ServerKey;
use meow_proto::datagram::{self, DatagramSender};
use meow_proto::testing::TestRng;
use meow_proto::wire::Request;

fuzz_target!(|data: &[u8]| {
    let server = ServerKey::from_secret_bytes([5; 32]);
    let _ = datagram::open_request(&server, data, 1_800_000_000);
    let mut rng = TestRng::new(2);
    let (_, pending) = DatagramSender::new(&server.public(), &mut rng)
        .unwrap()
        .seal_request(&Request::Info, 1);
    let _ = pending.open_response(data);
});
