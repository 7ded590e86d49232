//! Becoming contacts (spec §1.4): invite, answer, complete.
//!
//! 1. Alice calls [`invite`]: new keys for the future contact and an invitation card.
//! 2. Bob reads the card and calls [`answer`]: his own keys, an answer card naming the invitation,
//!    and a ready [`Conversation`]. He may send the answer back through Alice's mailbox
//!    ([`ContentType::CONTACT_ANSWER`]) or hand it over like the invitation.
//! 3. Alice calls [`complete`] with the answer: it must answer *this* invitation.
//!
//! A public card ([`CardRole::Public`], for the directory) may be answered many times.

use crate::card::{Card, CardBody, CardError, CardRole, ServerRef, UncheckedCard};
use crate::conversation::{Conversation, KeySet, PeerKeys};
use crate::crypto::CryptoRng;
use crate::envelope::{ContentType, EnvelopeError, Message, UnverifiedMessage};
use crate::keys::ContactKey;

/// Why an invitation step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvitationError {
    /// The card cannot be answered (it is itself an answer).
    #[error("this card is an answer, not an invitation: give it to `accept` on the inviting side")]
    NotAnInvitation,
    /// The answer card is not an answer.
    #[error("this card is not an answer card")]
    NotAnAnswer,
    /// The answer answers another invitation.
    #[error("this answer does not match the invitation (it answers invitation {0})")]
    WrongInvitation(String),
    /// A card inside a message is not valid.
    #[error(transparent)]
    Card(#[from] CardError),
    /// The message carrying an answer is not valid.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// My side of a contact being made: the keys promised on my card.
#[derive(Debug, Clone)]
pub struct NewContact {
    /// My identity for this contact.
    pub contact_key: ContactKey,
    /// My first conversation and lookup keys.
    pub keys: KeySet,
}

/// Options for a new card.
#[derive(Debug, Clone)]
pub struct CardOptions {
    /// My servers, most preferred first.
    pub servers: Vec<ServerRef>,
    /// The name I suggest.
    pub nickname: Option<String>,
    /// Now, Unix seconds.
    pub now: u64,
    /// Validity in seconds.
    pub ttl: u64,
    /// I start conversations classically (see [`CardBody::classical_start`]).
    pub classical_start: bool,
}

fn make_card(
    role: CardRole,
    answers: Option<&Card>,
    opts: &CardOptions,
    rng: &mut impl CryptoRng,
) -> (NewContact, Card) {
    let contact_key = ContactKey::generate(rng);
    let keys = KeySet::generate(0, rng);
    let body = CardBody {
        role,
        conversation: keys.conversation.public(),
        lookup: keys.lookup.public(),
        servers: opts.servers.clone(),
        nickname: opts.nickname.clone(),
        created: opts.now,
        expires: opts.now + opts.ttl.max(1),
        answers: answers.map(Card::id),
        classical_start: opts.classical_start,
    };
    let card = Card::sign(&contact_key, body);
    (NewContact { contact_key, keys }, card)
}

fn peer_keys(card: &Card) -> PeerKeys {
    PeerKeys {
        serial: 0,
        conversation: card.body.conversation,
        lookup: card.body.lookup,
    }
}

/// Makes an invitation card (or a public card, if `public`).
pub fn invite(opts: &CardOptions, public: bool, rng: &mut impl CryptoRng) -> (NewContact, Card) {
    make_card(
        if public { CardRole::Public } else { CardRole::Invitation },
        None,
        opts,
        rng,
    )
}

/// Answers an invitation or public card: my answer card and the conversation.
pub fn answer(
    invitation: &Card,
    opts: &CardOptions,
    rng: &mut impl CryptoRng,
) -> Result<(Conversation, Card), InvitationError> {
    if invitation.body.role == CardRole::Answer {
        return Err(InvitationError::NotAnInvitation);
    }
    let (mine, card) = make_card(CardRole::Answer, Some(invitation), opts, rng);
    let conv = Conversation::new(mine.contact_key, mine.keys, invitation.contact, peer_keys(invitation));
    Ok((conv, card))
}

/// Completes my invitation with the answer to it.
pub fn complete(mine: &NewContact, invitation: &Card, answer: &Card) -> Result<Conversation, InvitationError> {
    if answer.body.role != CardRole::Answer {
        return Err(InvitationError::NotAnAnswer);
    }
    match answer.body.answers {
        Some(id) if id == invitation.id() => {}
        Some(id) => return Err(InvitationError::WrongInvitation(id.to_string())),
        None => return Err(InvitationError::NotAnAnswer),
    }
    Ok(Conversation::new(
        mine.contact_key.clone(),
        mine.keys.clone(),
        answer.contact,
        peer_keys(answer),
    ))
}

/// The message that carries my answer card to the inviter's mailbox.
pub fn answer_message(answer: &Card, now_ms: u64, rng: &mut impl CryptoRng) -> Message {
    Message {
        id: crate::envelope::MessageId::random(rng),
        sent_at_ms: now_ms,
        content_type: ContentType::CONTACT_ANSWER,
        content: answer.as_bytes().to_vec(),
        rotation: None,
        rotation_ack: None,
        automatic: false,
        reply_to: None,
    }
}

/// Verifies a message found in an invitation's mailbox that introduces its sender with an answer
/// card: the card must be valid at `now` and the message signed by the card's contact key.
pub fn read_answer(unverified: UnverifiedMessage, now: u64) -> Result<Card, InvitationError> {
    let card_bytes = unverified.peek_introduction().ok_or(InvitationError::NotAnAnswer)?;
    let card = UncheckedCard::from_bytes(&card_bytes)?.check(now)?;
    let message = unverified.verify(&card.contact)?;
    if message.content_type != ContentType::CONTACT_ANSWER || message.content != card.as_bytes() {
        return Err(InvitationError::NotAnAnswer);
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;
    use crate::testing::TestRng;

    fn opts(nick: &str) -> CardOptions {
        CardOptions {
            servers: vec![],
            nickname: Some(nick.into()),
            now: 1000,
            ttl: 3600,
            classical_start: false,
        }
    }

    #[test]
    fn invite_answer_complete_and_talk() {
        let mut rng = TestRng::new(41);
        let (alice_new, invitation) = invite(&opts("alice"), false, &mut rng);
        let (mut bob, answer_card) = answer(&invitation, &opts("bob"), &mut rng).unwrap();

        // The answer travels through Alice's invitation mailbox.
        let msg = answer_message(&answer_card, 1_000_000, &mut rng);
        let env = envelope::seal(&msg, &bob.contact_key, &invitation.body.conversation, &mut rng).unwrap();
        let got = read_answer(envelope::open(&env, &alice_new.keys.conversation).unwrap(), 1001).unwrap();
        assert_eq!(got, answer_card);

        let mut alice = complete(&alice_new, &invitation, &got).unwrap();
        let out = bob.seal(ContentType::TEXT, b"hi alice".to_vec(), 5, &mut rng).unwrap();
        assert_eq!(
            alice
                .open(&out.mailbox, &out.envelope, 6, &mut rng)
                .unwrap()
                .message
                .content,
            b"hi alice"
        );
        let out = alice.seal(ContentType::TEXT, b"hi bob".to_vec(), 7, &mut rng).unwrap();
        assert_eq!(
            bob.open(&out.mailbox, &out.envelope, 8, &mut rng)
                .unwrap()
                .message
                .content,
            b"hi bob"
        );
    }

    #[test]
    fn an_answer_only_matches_its_invitation() {
        let mut rng = TestRng::new(42);
        let (alice1, inv1) = invite(&opts("a"), false, &mut rng);
        let (_, inv2) = invite(&opts("a"), false, &mut rng);
        let (_, ans2) = answer(&inv2, &opts("b"), &mut rng).unwrap();
        assert!(matches!(
            complete(&alice1, &inv1, &ans2),
            Err(InvitationError::WrongInvitation(_))
        ));
        assert_eq!(
            complete(&alice1, &inv1, &inv2).unwrap_err(),
            InvitationError::NotAnAnswer
        );
        assert_eq!(
            answer(&ans2, &opts("c"), &mut rng).unwrap_err(),
            InvitationError::NotAnInvitation
        );
    }

    #[test]
    fn an_introduction_signed_by_another_key_is_refused() {
        let mut rng = TestRng::new(43);
        let (alice_new, invitation) = invite(&opts("alice"), false, &mut rng);
        let (_, answer_card) = answer(&invitation, &opts("bob"), &mut rng).unwrap();
        let mallory = ContactKey::generate(&mut rng);
        let msg = answer_message(&answer_card, 1_000_000, &mut rng);
        let env = envelope::seal(&msg, &mallory, &invitation.body.conversation, &mut rng).unwrap();
        let err = read_answer(envelope::open(&env, &alice_new.keys.conversation).unwrap(), 1001).unwrap_err();
        assert_eq!(err, InvitationError::Envelope(EnvelopeError::NotFromContact));
    }
}
