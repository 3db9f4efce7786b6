//! A chat client for the tests: joins a room over WebSocket, reads frames
//! (messages that arrive together are read one at a time) and sends.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A chat client; messages that arrive together (one `messages` frame) are
/// read one at a time.
pub struct Ws {
    pub inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub queue: std::collections::VecDeque<Value>,
}

impl std::ops::Deref for Ws {
    type Target = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Ws {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

pub async fn chat(base: &str, id: &str, nick: &str, session: &str, token: Option<&str>) -> Ws {
    chat_from(base, id, nick, session, token, [127, 0, 0, 1])
        .await
        .expect("websocket connects")
}

/// Joins from loopback address `from` (time-outs and bans hold against a
/// client's address, so clients that must be told apart come from
/// different ones); the server's refusal, if it refuses.
pub async fn chat_from(
    base: &str,
    id: &str,
    nick: &str,
    session: &str,
    token: Option<&str>,
    from: [u8; 4],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let ws_base = base.replace("http://", "ws://");
    let mut url = format!("{ws_base}/api/broadcasts/{id}/chat?nick={nick}&session={session}");
    if let Some(t) = token {
        url.push_str(&format!("&token={t}"));
    }
    let server: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(from), 0).into())
        .unwrap();
    let tcp = socket.connect(server).await.unwrap();
    let (inner, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    Ok(Ws {
        inner,
        queue: Default::default(),
    })
}

/// Next JSON frame of `kind`, skipping others (bounded); each message of a
/// `messages` frame counts as a frame of kind `message`.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = ws.queue.pop_front() {
            if v["type"] == kind {
                return v;
            }
            continue;
        }
        let m = tokio::time::timeout_at(end, ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "messages" {
                ws.queue
                    .extend(v["messages"].as_array().unwrap().iter().cloned());
            } else {
                ws.queue.push_back(v);
            }
        }
    }
}

/// Whether a message with `text` arrives among the next 50 messages.
pub async fn message_arrives(ws: &mut Ws, text: &str) -> bool {
    for _ in 0..50 {
        if next_of(ws, "message").await["text"] == text {
            return true;
        }
    }
    false
}

pub async fn say(ws: &mut Ws, text: &str) {
    ws.send(Message::text(
        json!({"type": "message", "text": text}).to_string(),
    ))
    .await
    .unwrap();
}
