//! The frames a chat page receives, as JSON text. Every frame names its
//! type first, so that a client can tell frames apart by their first bytes.

use hyper_tungstenite::tungstenite::Message;

use crate::store::record::ChatMessage;

/// `{"type":"viewers","count":N}`.
pub fn viewers(count: u64) -> Message {
    Message::text(format!("{{\"type\":\"viewers\",\"count\":{count}}}"))
}

/// `{"type":kind,"messages":[...]}`: `history` on join, `messages` per batch.
pub fn messages<'a>(kind: &str, messages: impl IntoIterator<Item = &'a ChatMessage>) -> Message {
    let list: Vec<&ChatMessage> = messages.into_iter().collect();
    let json = serde_json::to_string(&list).expect("serializable");
    Message::text(format!("{{\"type\":\"{kind}\",\"messages\":{json}}}"))
}

/// `{"type":"deleted","ids":[...]}`: messages a moderator deleted.
pub fn deleted(ids: &[u64]) -> Message {
    let list = serde_json::to_string(ids).expect("numbers");
    Message::text(format!("{{\"type\":\"deleted\",\"ids\":{list}}}"))
}

/// `{"type":"notice","text":...,"slow_mode_secs":N}`: slow mode changed.
pub fn slow_mode(seconds: u32) -> Message {
    let text = match seconds {
        0 => "Slow mode is off.".to_string(),
        s => format!("Slow mode is on: one message per {s} s."),
    };
    let text = serde_json::to_string(&text).expect("a string");
    Message::text(format!(
        "{{\"type\":\"notice\",\"text\":{text},\"slow_mode_secs\":{seconds}}}"
    ))
}

/// `{"type":"error","error":...}`: to one client, about what it sent.
pub fn error(msg: &str) -> Message {
    let msg = serde_json::to_string(msg).expect("a string");
    Message::text(format!("{{\"type\":\"error\",\"error\":{msg}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_names_its_type_first_and_is_json() {
        for f in [
            viewers(3),
            messages("history", &[ChatMessage::new("u", "\"hi\"", false)]),
            deleted(&[1, 2]),
            slow_mode(30),
            error("not sent: \"x\""),
        ] {
            let t = f.into_text().unwrap().to_string();
            assert!(t.starts_with("{\"type\":\""), "{t}");
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert!(v["type"].is_string(), "{t}");
        }
    }
}
