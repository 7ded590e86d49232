//! Standalone objects: server cards, broadcasts, directory entries and withdrawals, group
//! payloads, stored conversation state, presence, file chunks, device sync records and batches (and a
//! replica applying them), device rosters and revocations, link cards and sealed join requests, transport addresses (binary and text), key texts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::broadcast::UncheckedBroadcast;
use meow_proto::codec::{Decode, Encode};
use meow_proto::devices::link::{LinkCard, SealedJoin};
use meow_proto::devices::{UncheckedRevocation, UncheckedRoster};
use meow_proto::directory::{UncheckedEntry, Withdrawal};
use meow_proto::file::FileChunk;
use meow_proto::sync::SyncRecord;
use meow_proto::sync::replica::{Applied, Replica};
use meow_proto::group::GroupPayload;
use meow_proto::presence::Presence;
use meow_proto::{Address, ContactPublic, Conversation, ServerCard};

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
        // A state stored in the old form (version 1) is written again in the current one.
        let again = c.to_bytes();
        if data[0] == again[0] {
            assert_eq!(again, data);
        } else {
            assert_eq!(Conversation::from_bytes(&again).map(|c| c.to_bytes()), Ok(again));
        }
    }
    if let Ok(c) = LinkCard::from_bytes(data) {
        assert_eq!(c.to_bytes(), data);
        assert_eq!(LinkCard::from_text(&c.to_text()), Ok(c));
    }
    if let Ok(j) = SealedJoin::from_bytes(data) {
        assert_eq!(j.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LinkCard::from_text(text);
    }
    if let Ok(b) = meow_proto::sync::batch::Batch::from_bytes(data) {
        assert_eq!(b.to_bytes(), data);
    }
    if let Ok(p) = meow_proto::sync::batch::Part::from_bytes(data) {
        assert_eq!(p.to_bytes(), data);
        let _ = meow_proto::sync::batch::Reassembly::default().add(data);
    }
    if let Ok(r) = UncheckedRoster::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
    }
    if let Ok(r) = UncheckedRevocation::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
    }
    if let Ok(r) = SyncRecord::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
        // A replica takes any record without panicking, and takes it once.
        let mut replica = Replica::new(r.device);
        let first = replica.apply(r.clone(), r.hlc.ms);
        let second = replica.apply(r, 0);
        match first {
            Applied::Won => assert_eq!(second, Applied::Duplicate),
            gap => assert_eq!(second, gap, "a record past a gap waits, however often it comes"),
        }
    }
    if let Ok(c) = FileChunk::from_bytes(data) {
        assert_eq!(c.to_bytes(), data);
        assert_eq!(c.meta.chunk_len(c.index), Some(c.data.len()));
    }
    if let Ok(p) = Presence::from_bytes(data) {
        assert_eq!(p.to_bytes(), data);
    }
    if let Ok(a) = Address::from_bytes(data) {
        assert_eq!(a.to_bytes(), data);
        // What an address of a known kind prints, it reads back as itself.
        if a.link().is_some() {
            assert_eq!(a.to_string().parse::<Address>(), Ok(a));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<ContactPublic>();
        if let Ok(a) = text.parse::<Address>() {
            assert_eq!(Address::from_bytes(&a.to_bytes()), Ok(a));
        }
        let _ = ServerCard::from_text(text);
    }
});
