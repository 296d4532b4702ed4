//! Bytes typed on a terminal as text for [`Connection::input`], which
//! carries text: [`Utf8Carry`] holds back a character split across reads.
//!
//! [`Connection::input`]: crate::Connection::input

/// Turns typed bytes into text, holding back a UTF-8 sequence split across
/// reads; bytes that are not UTF-8 become U+FFFD.
///
/// ```no_run
/// # async fn demo(conn: termstream_client::Connection, id: termstream_client::proto::SessionId) {
/// use termstream_client::Utf8Carry;
/// use tokio::io::AsyncReadExt;
///
/// let mut stdin = tokio::io::stdin();
/// let (mut buf, mut carry) = (vec![0u8; 4096], Utf8Carry::default());
/// while let Ok(n @ 1..) = stdin.read(&mut buf).await {
///     let text = carry.push(&buf[..n]);
///     if !text.is_empty() && conn.input(id.clone(), text).await.is_err() {
///         break;
///     }
/// }
/// // At the end of input, a character cut short is sent as U+FFFD.
/// let rest = carry.finish();
/// if !rest.is_empty() {
///     let _ = conn.input(id, rest).await;
/// }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Utf8Carry {
    /// The start of a character whose rest has not been read yet.
    held: Vec<u8>,
}

impl Utf8Carry {
    /// The text of what was held and `bytes`, but for an incomplete
    /// character at the end, which waits for the next call.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.held.extend_from_slice(bytes);
        let keep = match std::str::from_utf8(&self.held) {
            Ok(_) => 0,
            // An incomplete sequence at the very end waits for the rest.
            Err(e) if e.error_len().is_none() => self.held.len() - e.valid_up_to(),
            Err(_) => 0,
        };
        let tail = self.held.split_off(self.held.len() - keep);
        let text = String::from_utf8_lossy(&self.held).into_owned();
        self.held = tail;
        text
    }

    /// At the end of the input: what is held (a character cut short) as
    /// text, U+FFFD for it; empty when nothing is.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.held).into_owned();
        self.held.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_held_until_whole() {
        let mut c = Utf8Carry::default();
        let e = "é".as_bytes();
        assert_eq!(c.push(&[b'a', e[0]]), "a");
        assert_eq!(c.push(&[e[1], b'b']), "éb");
        assert_eq!(c.push(&[0xff, b'c']), "\u{fffd}c");
        assert_eq!(c.push(&[b'd', e[0]]), "d");
        assert_eq!(c.finish(), "\u{fffd}");
        assert_eq!(c.finish(), "");
    }
}
