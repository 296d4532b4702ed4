//! Terminal input modes that `avt` does not model, tracked for snapshots.
//!
//! `avt` keeps cursor-key, insert, origin, auto-wrap and new-line modes, but
//! ignores modes that only change what the terminal *sends*: bracketed paste,
//! focus reporting, mouse tracking and its encoding, and the application
//! keypad. A browser that joins a running vim or tmux needs them, so
//! [`InputModes`] follows them with a small byte-level scanner (the sequences
//! are pure ASCII, so it runs on raw bytes, across arbitrary splits) and
//! renders them as escape sequences for the snapshot.

/// Which mouse events the program asked for (DEC private modes 9, 1000,
/// 1002 and 1003; setting one replaces another, resetting any turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MouseTracking {
    #[default]
    Off,
    X10,
    Normal,
    ButtonEvent,
    AnyEvent,
}

/// How mouse reports are encoded (modes 1005, 1006 and 1015).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MouseEncoding {
    #[default]
    Default,
    Utf8,
    Sgr,
    Urxvt,
}

/// The input-related modes a program has set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputModes {
    pub bracketed_paste: bool,
    pub focus_events: bool,
    pub application_keypad: bool,
    pub mouse_tracking: MouseTracking,
    pub mouse_encoding: MouseEncoding,
}

/// The most parameters of one `CSI ? … h/l` sequence that are acted upon.
const MAX_PARAMS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    Escape,
    CsiStart,
    Private,
    IgnoreCsi,
}

/// A scanner for `ESC [ ? Pm h`, `ESC [ ? Pm l`, `ESC =`, `ESC >` and `ESC c`.
#[derive(Debug, Default)]
pub(crate) struct ModeTracker {
    modes: InputModes,
    state: State,
    params: [u16; MAX_PARAMS],
    count: usize,
}

impl ModeTracker {
    /// The modes in effect.
    pub(crate) fn modes(&self) -> InputModes {
        self.modes
    }

    /// Whether no sequence is under way.
    pub(crate) fn is_ground(&self) -> bool {
        self.state == State::Ground
    }

    /// Scans output bytes for mode changes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;

        while i < bytes.len() {
            if self.state == State::Ground {
                // Ordinary output is skipped wholesale up to the next escape.
                match bytes[i..].iter().position(|&b| b == 0x1b) {
                    Some(offset) => i += offset,
                    None => return,
                }
            }

            self.step(bytes[i]);
            i += 1;
        }
    }

    fn step(&mut self, byte: u8) {
        use State::*;

        // ESC always starts a new sequence; CAN and SUB abort one.
        match byte {
            0x1b => {
                self.state = Escape;
                return;
            }
            0x18 | 0x1a => {
                self.state = Ground;
                return;
            }
            _ => {}
        }

        self.state = match (self.state, byte) {
            (Ground, _) => Ground,
            (Escape, b'[') => CsiStart,
            (Escape, b'=') => self.set_keypad(true),
            (Escape, b'>') => self.set_keypad(false),
            (Escape, b'c') => {
                self.modes = InputModes::default();
                Ground
            }
            (Escape, _) => Ground,
            (CsiStart, b'?') => {
                self.params = [0; MAX_PARAMS];
                self.count = 1;
                Private
            }
            (CsiStart | IgnoreCsi, 0x40..=0x7e) => Ground,
            (CsiStart | IgnoreCsi, _) => IgnoreCsi,
            (Private, b'0'..=b'9') => {
                if let Some(param) = self.params.get_mut(self.count - 1) {
                    *param = param.saturating_mul(10).saturating_add(u16::from(byte - b'0'));
                }
                Private
            }
            (Private, b';') => {
                self.count += 1;
                Private
            }
            (Private, b'h' | b'l') => {
                let used = self.count.min(MAX_PARAMS);
                for n in 0..used {
                    self.apply(self.params[n], byte == b'h');
                }
                Ground
            }
            (Private, 0x40..=0x7e) => Ground,
            (Private, _) => IgnoreCsi,
        };
    }

    fn set_keypad(&mut self, on: bool) -> State {
        self.modes.application_keypad = on;
        State::Ground
    }

    fn apply(&mut self, mode: u16, on: bool) {
        let modes = &mut self.modes;
        let tracking = |kind| if on { kind } else { MouseTracking::Off };
        let encoding = |kind| if on { kind } else { MouseEncoding::Default };

        match mode {
            9 => modes.mouse_tracking = tracking(MouseTracking::X10),
            1000 => modes.mouse_tracking = tracking(MouseTracking::Normal),
            1002 => modes.mouse_tracking = tracking(MouseTracking::ButtonEvent),
            1003 => modes.mouse_tracking = tracking(MouseTracking::AnyEvent),
            1004 => modes.focus_events = on,
            1005 => modes.mouse_encoding = encoding(MouseEncoding::Utf8),
            1006 => modes.mouse_encoding = encoding(MouseEncoding::Sgr),
            1015 => modes.mouse_encoding = encoding(MouseEncoding::Urxvt),
            2004 => modes.bracketed_paste = on,
            _ => {}
        }
    }
}

impl InputModes {
    /// Appends sequences that set these modes on a terminal where all of
    /// them are off. They change no screen content, so they can be written
    /// before the rest of the snapshot.
    pub(crate) fn push_sequences(&self, out: &mut String) {
        let tracking = match self.mouse_tracking {
            MouseTracking::Off => None,
            MouseTracking::X10 => Some("9"),
            MouseTracking::Normal => Some("1000"),
            MouseTracking::ButtonEvent => Some("1002"),
            MouseTracking::AnyEvent => Some("1003"),
        };
        let encoding = match self.mouse_encoding {
            MouseEncoding::Default => None,
            MouseEncoding::Utf8 => Some("1005"),
            MouseEncoding::Sgr => Some("1006"),
            MouseEncoding::Urxvt => Some("1015"),
        };
        let flags = [
            (self.bracketed_paste, Some("2004")),
            (self.focus_events, Some("1004")),
            (true, tracking),
            (true, encoding),
        ];

        for (on, mode) in flags {
            if let (true, Some(mode)) = (on, mode) {
                out.push_str("\x1b[?");
                out.push_str(mode);
                out.push('h');
            }
        }

        if self.application_keypad {
            out.push_str("\x1b=");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ModeTracker, MouseEncoding, MouseTracking};

    #[test]
    fn modes_are_followed_across_splits() {
        let input = b"x\x1b[?2004h\x1b[?1002;1006h\x1b=\x1b[?1004h\x1b[?1004l\x1b[2J";

        for split in 0..=input.len() {
            let mut tracker = ModeTracker::default();
            tracker.feed(&input[..split]);
            tracker.feed(&input[split..]);
            let modes = tracker.modes();
            assert!(modes.bracketed_paste && modes.application_keypad && !modes.focus_events);
            assert_eq!(modes.mouse_tracking, MouseTracking::ButtonEvent);
            assert_eq!(modes.mouse_encoding, MouseEncoding::Sgr);

            let mut out = String::new();
            modes.push_sequences(&mut out);
            assert_eq!(out, "\x1b[?2004h\x1b[?1002h\x1b[?1006h\x1b=");
        }
    }

    #[test]
    fn reset_and_other_sequences() {
        let mut tracker = ModeTracker::default();
        tracker.feed(b"\x1b[?1000h\x1b[?1000l\x1b[1;2h\x1b[?99999999;2004h\x1b>");
        assert_eq!(tracker.modes().mouse_tracking, MouseTracking::Off);
        assert!(tracker.modes().bracketed_paste);
        tracker.feed(b"\x1bc");
        assert_eq!(tracker.modes(), Default::default());
    }
}
