//! What lets a screen model skip a flood of plain text exactly.
//!
//! Parsing is most of the server's CPU while output floods, and most of a
//! flood never reaches a screen: only the last `rows + scrollback` lines of
//! it do. Plain text (printable characters, CR, LF and TAB) changes
//! nothing but cells and the cursor: not the pen, modes, charsets, margins
//! or tab stops, and it never moves the cursor up. So when the model's parser is at rest (in its ground
//! state, no scroll region set), a stretch of plain text that holds at
//! least `rows` line feeds and ends with CR LF leaves the model in the same
//! state as a CR and `rows` line feeds would (the cursor at column 0 of a
//! fresh bottom row, everything above scrolled away), apart from rows that
//! the following `rows + scrollback` lines scroll out of the scrollback.
//! The screen task uses that to skip to the tail of a flood without losing
//! exactness (see `screen_task`).
//!
//! [`ParserRest`] follows avt's parser at the byte level, conservatively:
//! whatever it cannot follow exactly (a C1 control, a non-ASCII character
//! inside a sequence) makes it `Unknown` until the next ESC, CAN or SUB,
//! which put avt's parser in a known state from any state.

/// Where avt's parser is, as far as the bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Seq {
    #[default]
    Ground,
    Escape,
    EscapeIntermediate,
    Csi,
    Osc,
    /// DCS, SOS, PM or APC: a string ended only by ESC, CAN or SUB.
    Str,
    Unknown,
}

/// Follows whether avt's parser is in its ground state and whether a scroll
/// region may be set, from the bytes fed to the model.
#[derive(Debug, Default)]
pub(crate) struct ParserRest {
    seq: Seq,
    /// The previous byte was 0xC2, the lead byte of a C1 control in UTF-8.
    lead_c2: bool,
    /// The CSI being read has a private marker (`?`, `>`, …).
    private: bool,
    /// The CSI being read has parameters.
    params: bool,
    /// A scroll region may be set (`CSI Pt ; Pb r` with parameters seen,
    /// and no `CSI r` or `ESC c` since).
    margins: bool,
}

impl ParserRest {
    /// Follows `bytes`, fed to the model.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.step(b);
        }
    }

    /// Whether the parser is in its ground state with no scroll region,
    /// and the last byte could not start a C1 control.
    pub(crate) fn at_rest(&self) -> bool {
        self.seq == Seq::Ground && !self.margins && !self.lead_c2
    }

    fn step(&mut self, b: u8) {
        use Seq::*;
        let c1 = self.lead_c2 && (0x80..=0x9f).contains(&b);
        self.lead_c2 = b == 0xc2;
        if c1 {
            // avt acts on C1 controls in every state; not followed here.
            self.seq = Unknown;
            return;
        }
        self.seq = match (self.seq, b) {
            (_, 0x1b) => Escape,
            (_, 0x18 | 0x1a) => Ground,
            (Unknown, _) => Unknown,
            (Ground, _) => Ground,
            // In a string, avt reads any other character as part of it.
            (Osc, 0x07) => Ground,
            (Osc, _) => Osc,
            (Str, _) => Str,
            // avt reads a non-ASCII character inside a sequence as 'A'.
            (_, 0x80..) => Unknown,
            (Escape, b'[') => {
                self.private = false;
                self.params = false;
                Csi
            }
            (Escape, b']') => Osc,
            (Escape, b'P' | b'X' | b'^' | b'_') => Str,
            (Escape, 0x20..=0x2f) => EscapeIntermediate,
            (Escape, b'c') => {
                self.margins = false;
                Ground
            }
            (Escape | EscapeIntermediate, 0x30..=0x7e) => Ground,
            (Csi, b'r') => {
                if !self.private {
                    self.margins = self.params;
                }
                Ground
            }
            (Csi, 0x40..=0x7e) => Ground,
            (Csi, b'0'..=b'9' | b';' | b':') => {
                self.params = true;
                Csi
            }
            (Csi, b'<'..=b'?') => {
                self.private = true;
                Csi
            }
            // C0 controls execute inside sequences; DEL is ignored;
            // intermediates are collected.
            (state, _) => state,
        };
    }
}

/// Whether `bytes` are plain text: nothing but printable characters (any
/// UTF-8 but C1 controls), CR, LF and TAB (not BS, which could wrap back
/// up a row). `lead_c2` says whether the
/// byte before them was 0xC2; the same is returned for their last byte.
///
/// A flood is scanned with this while nobody needs its screen, so it runs
/// [`BLOCK`] bytes at a time: a block of printable ASCII, CR, LF and TAB
/// (most of a text flood) is checked without a branch per byte, which the
/// compiler turns into vector instructions; only other blocks are checked
/// byte by byte. Byte by byte, it was 4–5 % of the server's CPU in the
/// benchmark's load scenario (three floods and a typed echo).
pub(crate) fn is_plain(bytes: &[u8], mut lead_c2: bool) -> (bool, bool) {
    for block in bytes.chunks(BLOCK) {
        if ascii_plain(block) {
            // Every byte is below 0x80: none is a C1 control (whatever
            // came before), and the last is not 0xC2.
            lead_c2 = false;
            continue;
        }
        let (plain, lead) = is_plain_bytes(block, lead_c2);
        if !plain {
            return (false, false);
        }
        lead_c2 = lead;
    }
    (true, lead_c2)
}

/// The bytes [`is_plain`] checks at a time.
const BLOCK: usize = 64;

/// Whether every byte of `block` is printable ASCII (0x20–0x7F), CR, LF or
/// TAB; with no early exit, so that it is checked many bytes per
/// instruction.
fn ascii_plain(block: &[u8]) -> bool {
    let other = block.iter().fold(0u8, |acc, &b| {
        let ok = (b.wrapping_sub(0x20) < 0x60) | (b == b'\r') | (b == b'\n') | (b == b'\t');
        acc | u8::from(!ok)
    });
    other == 0
}

/// [`is_plain`], byte by byte.
fn is_plain_bytes(bytes: &[u8], lead_c2: bool) -> (bool, bool) {
    let (n, lead) = plain_bytes(bytes, lead_c2);
    if n == bytes.len() { (true, lead) } else { (false, false) }
}

/// How many of `bytes`, from the first, are plain text (see [`is_plain`]):
/// the offset of the first that is not, or their length.
pub(crate) fn plain_prefix(bytes: &[u8], mut lead_c2: bool) -> usize {
    let mut done = 0;
    for block in bytes.chunks(BLOCK) {
        if ascii_plain(block) {
            lead_c2 = false;
            done += block.len();
            continue;
        }
        let (n, lead) = plain_bytes(block, lead_c2);
        done += n;
        if n < block.len() {
            break;
        }
        lead_c2 = lead;
    }
    done
}

/// How many of `bytes` are plain text, byte by byte, and whether the last
/// of those was 0xC2.
fn plain_bytes(bytes: &[u8], mut lead_c2: bool) -> (usize, bool) {
    for (i, &b) in bytes.iter().enumerate() {
        let ok = match b {
            0x20..=0x7f => true,
            b'\r' | b'\n' | b'\t' => true,
            0x80..=0x9f => !lead_c2,
            0xa0.. => true,
            _ => false,
        };
        if !ok {
            return (i, false);
        }
        lead_c2 = b == 0xc2;
    }
    (bytes.len(), lead_c2)
}

/// How many line feeds `bytes` hold; counted in runs of 255 bytes into a
/// byte-wide sum, which the compiler turns into vector instructions (a
/// count into a `usize` per byte has lanes eight times as wide).
pub(crate) fn line_feeds(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|run| u64::from(run.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{ParserRest, is_plain, is_plain_bytes, line_feeds, plain_prefix};

    fn rest_after(bytes: &[u8]) -> bool {
        let mut r = ParserRest::default();
        r.feed(bytes);
        r.at_rest()
    }

    #[test]
    fn sequences_end_in_the_ground_state() {
        assert!(rest_after(b"plain text\r\n"));
        assert!(rest_after(b"\x1b[1;31mred\x1b[m"));
        assert!(rest_after(b"\x1b]0;title\x07"));
        assert!(rest_after(b"\x1b]0;title\x1b\\"));
        assert!(rest_after(b"\x1bP1$r\x1b\\"));
        assert!(rest_after(b"\x1b(B\x1b="));
        assert!(rest_after(b"\x1b[?1049h\x1b[?25l"));
        assert!(rest_after(b"\x1b[31\x18"), "CAN aborts a sequence");
    }

    #[test]
    fn unfinished_sequences_are_not_at_rest() {
        assert!(!rest_after(b"\x1b"));
        assert!(!rest_after(b"\x1b[3"));
        assert!(!rest_after(b"\x1b[3\r\n"), "C0 controls execute inside a CSI");
        assert!(!rest_after(b"\x1b]0;title"));
        assert!(!rest_after(b"\x1b]0;t\xc3\xa9tle"));
        assert!(!rest_after(b"\x1bPq#0;2;0;0;0"));
        assert!(!rest_after(b"\x1b(")); // an intermediate waits for its final
    }

    #[test]
    fn what_cannot_be_followed_is_unknown_until_the_next_escape() {
        assert!(!rest_after("a\u{9b}31".as_bytes()), "a C1 CSI");
        assert!(!rest_after("a\u{9d}0;x\u{7}more".as_bytes()));
        assert!(!rest_after("\x1b[3é".as_bytes()), "non-ASCII inside a CSI");
        assert!(rest_after("\x1b[3é\x1b[m".as_bytes()));
        assert!(rest_after("héllo wörld ✓".as_bytes()));
    }

    #[test]
    fn a_scroll_region_is_not_at_rest() {
        assert!(!rest_after(b"\x1b[2;10r"));
        assert!(rest_after(b"\x1b[2;10rx\x1b[r"));
        assert!(rest_after(b"\x1b[2;10r\x1bc"));
        assert!(rest_after(b"\x1b[?1r"), "a private 'r' is not DECSTBM");
    }

    #[test]
    fn plain_text() {
        assert_eq!(is_plain(b"abc\r\n\txy~\x7f", false), (true, false));
        assert!(!is_plain(b"a\x08", false).0);
        assert_eq!(is_plain("héllo ✓ \u{a0}".as_bytes(), false), (true, false));
        assert!(!is_plain(b"a\x1b[m", false).0);
        assert!(!is_plain(b"a\x07", false).0);
        assert!(!is_plain(b"\x0e", false).0, "SO switches charsets");
        assert!(!is_plain("x\u{9b}".as_bytes(), false).0, "a C1 control");
        assert_eq!(is_plain(b"x\xc2", false), (true, true));
        assert!(!is_plain(b"\x9b", true).0, "a C1 control split across pieces");
        assert!(is_plain("\u{a9}".as_bytes()[1..].as_ref(), false).0);
    }

    /// The block-wise scan answers as the byte-by-byte one for random
    /// mixes of text, controls, C1 controls and other UTF-8, whole and
    /// split in two calls, and for a C1 control at every position of the
    /// first blocks.
    #[test]
    fn the_fast_scan_answers_as_the_byte_by_byte_one() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(11);
        let pieces: [&[u8]; 14] = [
            b"plain text ",
            b"\r\n",
            b"\t",
            b"\x7f",
            b"\xc2",
            b"\x9b",
            b"\xc2\xa9",
            "é✓".as_bytes(),
            b"\x1b[m",
            b"\x08",
            b"\x07",
            b"\x85",
            // The ends of the C1 range.
            b"\xc2\x80",
            b"\xc2\x9f",
        ];
        for round in 0..20_000 {
            let mut bytes = Vec::new();
            // Mostly long plain runs, with the rare odd byte, as floods are.
            let len = rng.random_range(0..400);
            while bytes.len() < len {
                if rng.random_bool(0.9) {
                    bytes.extend_from_slice(pieces[rng.random_range(0..4)]);
                } else {
                    bytes.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
                }
            }
            let lead = rng.random_bool(0.5);
            let want = is_plain_bytes(&bytes, lead);
            assert_eq!(
                is_plain(&bytes, lead),
                want,
                "round {round}: {:?} after lead {lead}",
                String::from_utf8_lossy(&bytes)
            );
            // Split in two calls, as a scan of chunks does.
            let cut = rng.random_range(0..=bytes.len());
            let (first, carried) = is_plain(&bytes[..cut], lead);
            let split = if first {
                is_plain(&bytes[cut..], carried)
            } else {
                (false, false)
            };
            assert_eq!(split, want, "round {round}, cut at {cut}");
            // The plain prefix: the longest prefix the byte-by-byte check
            // finds plain (prefixes of plain text are plain).
            let lens: Vec<usize> = (0..=bytes.len()).collect();
            let longest = lens.partition_point(|&n| is_plain_bytes(&bytes[..n], lead).0) - 1;
            assert_eq!(plain_prefix(&bytes, lead), longest, "round {round}: prefix");
            let want = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(line_feeds(&bytes), want, "round {round}");
        }
        // A C1 control (0xC2 0x9B) across every position of the first
        // blocks, their boundaries included.
        let a = |n: usize| vec![b'a'; n];
        for k in 0..=130 {
            let mut v = a(k);
            v.extend_from_slice(b"\xc2\x9b");
            v.extend(a(70));
            assert_eq!(is_plain(&v, false), (false, false), "C1 at {k}");
        }
        // 0xC2 ends a block, a whole ASCII block follows, then 0x9B: the
        // 0xC2 leads nothing (plain), and nothing is carried out.
        let mut v = a(63);
        v.push(0xc2);
        v.extend(a(64));
        v.push(0x9b);
        assert_eq!(is_plain(&v, false), (true, false));
        assert_eq!(is_plain(&a(64), true), (true, false));
        assert_eq!(is_plain(b"", true), (true, true));
        // Runs longer than a count's byte can hold.
        assert_eq!(line_feeds(&[b'\n'; 1000]), 1000);
        assert_eq!(line_feeds(&[b'x'; 1000]), 0);
    }
}
