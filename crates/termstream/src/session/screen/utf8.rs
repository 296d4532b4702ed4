//! Incremental UTF-8 decoding of pty output for the screen model.
//!
//! [`Utf8Carry`] turns byte chunks that may split a multi-byte sequence at
//! any position into `&str` slices without copying the valid parts: a
//! trailing incomplete sequence (at most 3 bytes) is kept for the next call
//! and every invalid sequence becomes one U+FFFD, as in
//! `String::from_utf8_lossy`.

/// The replacement for a maximal invalid subsequence.
const REPLACEMENT: &str = "\u{FFFD}";

/// The bytes of an incomplete UTF-8 sequence left over from the last chunk.
#[derive(Debug, Default)]
pub(crate) struct Utf8Carry {
    buf: [u8; 4],
    len: usize,
}

impl Utf8Carry {
    /// The bytes of a split character held for the next call.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Decodes `bytes`, passing each run of valid text to `sink` in order.
    ///
    /// Valid runs are borrowed straight from `bytes`; only the few bytes of a
    /// sequence split across calls are copied.
    pub(crate) fn decode(&mut self, bytes: &[u8], mut sink: impl FnMut(&str)) {
        let rest = self.finish_carried(bytes, &mut sink);
        let mut chunks = rest.utf8_chunks().peekable();

        while let Some(chunk) = chunks.next() {
            if !chunk.valid().is_empty() {
                sink(chunk.valid());
            }

            let invalid = chunk.invalid();

            if invalid.is_empty() {
                continue;
            }

            // Only the last chunk can end in a sequence that more bytes could
            // complete; an earlier invalid part is followed by a byte that
            // does not continue it, so it is definitely invalid.
            if chunks.peek().is_none() && is_incomplete(invalid) {
                self.buf[..invalid.len()].copy_from_slice(invalid);
                self.len = invalid.len();
            } else {
                sink(REPLACEMENT);
            }
        }
    }

    /// Completes (or rejects) the carried sequence with the first bytes of
    /// `bytes` and returns the bytes not yet consumed.
    fn finish_carried<'a>(&mut self, bytes: &'a [u8], sink: &mut impl FnMut(&str)) -> &'a [u8] {
        if self.len == 0 {
            return bytes;
        }

        let carried = self.len;
        let extra = bytes.len().min(4 - carried);
        let mut tmp = [0u8; 4];
        tmp[..carried].copy_from_slice(&self.buf[..carried]);
        tmp[carried..carried + extra].copy_from_slice(&bytes[..extra]);
        let tmp = &tmp[..carried + extra];
        self.len = 0;

        let Some(chunk) = tmp.utf8_chunks().next() else {
            return bytes;
        };

        if let Some(ch) = chunk.valid().chars().next() {
            // The carried bytes start a sequence, so the first valid character
            // begins at offset 0 and is longer than what was carried.
            let mut utf8 = [0u8; 4];
            sink(ch.encode_utf8(&mut utf8));
            let used = ch.len_utf8().saturating_sub(carried).min(bytes.len());
            return &bytes[used..];
        }

        let invalid = chunk.invalid();

        if invalid.len() == tmp.len() && is_incomplete(invalid) {
            // Still not enough bytes: everything given so far is carried again.
            self.buf[..tmp.len()].copy_from_slice(tmp);
            self.len = tmp.len();
            return &[];
        }

        sink(REPLACEMENT);
        let used = invalid.len().saturating_sub(carried).min(bytes.len());
        &bytes[used..]
    }

    /// The number of bytes currently carried (at most 3).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.len
    }
}

/// How many bytes at the end of `data` begin a UTF-8 sequence that more
/// bytes could complete (0 to 3): what a text frame holds back for the next.
pub(crate) fn incomplete_tail(data: &[u8]) -> usize {
    // A sequence is at most 4 bytes: only the last 3 can be an open one.
    let last = &data[data.len().saturating_sub(3)..];
    match last.utf8_chunks().last() {
        Some(chunk) if is_incomplete(chunk.invalid()) => chunk.invalid().len(),
        _ => 0,
    }
}

/// Whether `bytes` is a proper prefix of some valid UTF-8 sequence.
fn is_incomplete(bytes: &[u8]) -> bool {
    bytes.len() < 4 && matches!(std::str::from_utf8(bytes), Err(error) if error.error_len().is_none())
}

#[cfg(test)]
mod tests {
    use super::{Utf8Carry, incomplete_tail};

    #[test]
    fn finds_incomplete_tails() {
        let emoji = "😀".as_bytes();
        for cut in 1..4 {
            let mut d = b"ab".to_vec();
            d.extend_from_slice(&emoji[..cut]);
            assert_eq!(incomplete_tail(&d), cut, "cut at {cut}");
        }
        assert_eq!(incomplete_tail("a😀".as_bytes()), 0);
        assert_eq!(incomplete_tail("é".as_bytes()), 0);
        assert_eq!(
            incomplete_tail(b"\x98\x80\xc3"),
            1,
            "stray continuation bytes, then a start"
        );
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(b"\xff"), 0);
        assert_eq!(incomplete_tail(b"\xe2\x28"), 0, "a start its next byte cannot continue");
        assert_eq!(incomplete_tail(b""), 0);
    }

    fn decode_in_parts(parts: &[&[u8]]) -> (String, usize) {
        let mut carry = Utf8Carry::default();
        let mut out = String::new();

        for part in parts {
            carry.decode(part, |s| out.push_str(s));
        }

        (out, carry.pending())
    }

    #[test]
    fn emoji_split_at_every_position_is_reassembled() {
        let text = "a😀b";
        let bytes = text.as_bytes();

        for first in 0..=bytes.len() {
            for second in first..=bytes.len() {
                let parts = [&bytes[..first], &bytes[first..second], &bytes[second..]];
                let (out, pending) = decode_in_parts(&parts);
                assert_eq!(out, text, "split at {first} and {second}");
                assert_eq!(pending, 0);
            }
        }

        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_in_parts(&single).0, text);
    }

    #[test]
    fn incomplete_tail_is_carried_but_not_emitted() {
        let (out, pending) = decode_in_parts(&[b"x\xF0\x9F\x98"]);
        assert_eq!(out, "x");
        assert_eq!(pending, 3);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let cases: &[(&[&[u8]], &str)] = &[
            (&[b"a\xFFb"], "a\u{FFFD}b"),
            (&[b"a\xE2\x82b"], "a\u{FFFD}b"),
            (&[b"a\xE2", b"\x82b"], "a\u{FFFD}b"),
            (&[b"a\xF0", b"\x9F", b"x"], "a\u{FFFD}x"),
            (&[b"\xF0", b"\xF0\x9F\x98\x80"], "\u{FFFD}😀"),
            (&[b"\xC0\xAF"], "\u{FFFD}\u{FFFD}"),
            (&[b"\xED\xA0\x80"], "\u{FFFD}\u{FFFD}\u{FFFD}"),
            (&[b"\x80\x80", b"\x80"], "\u{FFFD}\u{FFFD}\u{FFFD}"),
        ];

        for (parts, expected) in cases {
            let joined: Vec<u8> = parts.concat();
            assert_eq!(String::from_utf8_lossy(&joined), *expected);
            assert_eq!(decode_in_parts(parts).0, *expected, "{parts:?}");
        }
    }

    #[test]
    fn arbitrary_splits_match_lossy_decoding() {
        use rand::{Rng, SeedableRng, rngs::StdRng};

        let mut rng = StdRng::seed_from_u64(7);

        for _ in 0..2000 {
            let len = rng.random_range(0..24);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.random_range(0..4) {
                    0 => rng.random_range(0x80..=0xBF),
                    1 => rng.random_range(0xC0..=0xFF),
                    2 => b'a',
                    _ => rng.random(),
                })
                .collect();
            let mut parts = Vec::new();
            let mut at = 0;

            while at < bytes.len() {
                let n = rng.random_range(1..=4).min(bytes.len() - at);
                parts.push(&bytes[at..at + n]);
                at += n;
            }

            let (mut out, pending) = decode_in_parts(&parts);

            if pending > 0 {
                out.push('\u{FFFD}');
            }

            assert_eq!(out, String::from_utf8_lossy(&bytes), "{bytes:x?}");
        }
    }
}
