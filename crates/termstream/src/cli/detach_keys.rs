//! The detach key sequence of `attach` (default `Ctrl-\` then `d`), as a
//! small pure state machine: bytes typed go through [`DetachKeys::feed`],
//! which holds back a partial match and forwards it when the next byte
//! shows it was not the sequence after all.

/// The default sequence, as `--detach-keys` takes it.
pub const DEFAULT: &str = "ctrl-\\,d";

/// Parses `ctrl-\,d` style specs: comma-separated keys, each a single
/// character or `ctrl-X` (X a letter or one of `@[\]^_`).
pub fn parse(spec: &str) -> Result<Vec<u8>, String> {
    let keys: Result<Vec<u8>, String> = spec.split(',').map(parse_key).collect();
    let keys = keys?;
    if keys.is_empty() {
        return Err("give at least one key".into());
    }
    Ok(keys)
}

fn parse_key(key: &str) -> Result<u8, String> {
    let lower = key.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("ctrl-")
        && rest.len() == 1
    {
        let c = rest.as_bytes()[0];
        return match c {
            b'a'..=b'z' => Ok(c - b'a' + 1),
            b'@' => Ok(0),
            b'[' => Ok(27),
            b'\\' => Ok(28),
            b']' => Ok(29),
            b'^' => Ok(30),
            b'_' => Ok(31),
            _ => Err(format!("ctrl-{} is not a control key", rest)),
        };
    }
    match key.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(format!("{key:?} is not a key: use one character or ctrl-X")),
    }
}

/// Where a sequence of typed bytes stands against the detach keys.
#[derive(Debug, Clone)]
pub struct DetachKeys {
    keys: Vec<u8>,
    /// How many of `keys` the last bytes typed matched (held back).
    matched: usize,
}

/// What one read of typed bytes gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes to send to the program.
    pub forward: Vec<u8>,
    /// The whole sequence was typed: detach (bytes after it are dropped).
    pub detach: bool,
}

impl DetachKeys {
    pub fn new(keys: Vec<u8>) -> DetachKeys {
        DetachKeys { keys, matched: 0 }
    }

    /// Runs `input` through the machine.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut fed = Fed::default();
        for &b in input {
            if b != self.keys[self.matched] && self.matched > 0 {
                // Not the sequence: what was held is ordinary input.
                fed.forward.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    fed.detach = true;
                    return fed;
                }
            } else {
                fed.forward.push(b);
            }
        }
        fed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> DetachKeys {
        DetachKeys::new(parse(DEFAULT).unwrap())
    }

    #[test]
    fn specs_parse() {
        assert_eq!(parse("ctrl-\\,d"), Ok(vec![28, b'd']));
        assert_eq!(parse("ctrl-a,ctrl-D"), Ok(vec![1, 4]));
        assert_eq!(parse("ctrl-p,ctrl-q"), Ok(vec![16, 17]));
        assert!(parse("ctrl-1").is_err());
        assert!(parse("dd").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn ordinary_input_passes_through() {
        let mut k = default();
        assert_eq!(
            k.feed(b"ls -l\r"),
            Fed {
                forward: b"ls -l\r".to_vec(),
                detach: false
            }
        );
    }

    #[test]
    fn the_sequence_detaches_even_across_reads() {
        let mut k = default();
        assert_eq!(
            k.feed(b"ab\x1c"),
            Fed {
                forward: b"ab".to_vec(),
                detach: false
            }
        );
        assert_eq!(
            k.feed(b"dignored"),
            Fed {
                forward: vec![],
                detach: true
            }
        );
        // The machine starts over afterwards.
        assert_eq!(
            k.feed(b"d"),
            Fed {
                forward: b"d".to_vec(),
                detach: false
            }
        );
    }

    #[test]
    fn a_partial_match_is_forwarded_when_it_breaks() {
        let mut k = default();
        assert_eq!(
            k.feed(b"\x1cx"),
            Fed {
                forward: b"\x1cx".to_vec(),
                detach: false
            }
        );
        // The breaking byte may itself start the sequence.
        assert_eq!(
            k.feed(b"\x1c\x1cd"),
            Fed {
                forward: b"\x1c".to_vec(),
                detach: true
            }
        );
        let mut one = DetachKeys::new(vec![4]);
        assert_eq!(
            one.feed(b"a\x04"),
            Fed {
                forward: b"a".to_vec(),
                detach: true
            }
        );
    }
}
