//! Fan-out: each message that arrives on the event bus becomes one WebSocket frame, serialised
//! once and queued to every local connection it concerns (both participants of a direct
//! message, the recipient of a typing notice, the followee of a new follow, the subscribers of
//! a chat room).

use serde_json::json;

use super::{Connections, Frame};
use crate::chat::service::Chat;
use crate::events::bus::BusMessage;
use crate::messaging::model::Event;

/// Pushes one bus message to this instance's sockets (a chat message is already in the chat
/// store, which serves history; a room change drops this instance's cached rules).
pub fn deliver(conns: &Connections, chat: &Chat, m: BusMessage) {
    match m {
        BusMessage::Event { event } => {
            let (body, users, created) = match &event {
                Event::MessageCreated { message, .. } => (
                    json!({"type": "message", "message": message}),
                    [message.from, message.to],
                    Some(message.id),
                ),
                Event::MessageEdited { message, .. } => (
                    json!({"type": "edited", "message": message}),
                    [message.from, message.to],
                    None,
                ),
                Event::MessageDeleted { message, .. } => (
                    json!({"type": "deleted", "message": message}),
                    [message.from, message.to],
                    None,
                ),
                Event::Read {
                    conversation,
                    reader,
                    up_to,
                    ..
                } => (
                    json!({"type": "read", "conversation": conversation, "reader": reader, "up_to": up_to}),
                    [conversation.a, conversation.b],
                    None,
                ),
                Event::Followed {
                    follower,
                    followee,
                    since,
                    ..
                } => {
                    let body = json!({"type": "follower", "follower": follower, "since": since});
                    conns.to_user(*followee, &Frame::new(&body));
                    return;
                }
                // Nobody is told they lost a follower.
                Event::Unfollowed { .. } => return,
            };
            let mut frame = Frame::new(&body);
            frame.created = created;
            conns.to_user(users[0], &frame);
            if users[1] != users[0] {
                conns.to_user(users[1], &frame);
            }
        }
        BusMessage::Typing { from, to } => {
            conns.to_user(to, &Frame::new(&json!({"type": "typing", "from": from})));
        }
        BusMessage::Chat { message } => {
            conns.to_room(
                &message.room,
                &Frame::new(&json!({"type": "chat", "message": message})),
            );
        }
        BusMessage::RoomChanged { room } => chat.room_changed(&room),
    }
}
