//! Standalone objects: server cards, broadcasts, directory entries and withdrawals, group
//! payloads, stored conversation state, key texts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::broadcast::UncheckedBroadcast;
use meow_proto::codec::{Decode, Encode};
use meow_proto::directory::{UncheckedEntry, Withdrawal};
use meow_proto::group::GroupPayload;
use meow_proto::{ContactPublic, Conversation, ServerCard};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = ServerCard::from_bytes(data) {
        assert_eq!(c.to_bytes(), data);
    }
    if let Ok(b) = UncheckedBroadcast::from_bytes(data) {
        assert_eq!(b.to_bytes(), data);
        let _ = b.check();
    }
    if let Ok(e) = UncheckedEntry::from_bytes(data) {
        assert_eq!(e.to_bytes(), data);
        let _ = e.check(1_800_000_000);
    }
    if let Ok(w) = Withdrawal::from_bytes(data) {
        let _ = w.check();
    }
    if let Ok(g) = GroupPayload::from_bytes(data) {
        assert_eq!(g.to_bytes(), data);
        if let GroupPayload::Info(info) = g {
            let _ = info.verify();
        }
    }
    if let Ok(c) = Conversation::from_bytes(data) {
        assert_eq!(c.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<ContactPublic>();
        let _ = ServerCard::from_text(text);
    }
});
