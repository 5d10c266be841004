//! Telling the person's keys from what their terminal says by itself. xterm.js answers
//! the queries tmux's client sends it when it attaches (device attributes, colours, the
//! cursor's position) and reports focus and the mouse through the same channel as keys;
//! none of that is the person answering a prompt.

/// Whether `bytes` from the browser hold at least one key the person pressed.
pub fn has_keypress(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        match report_len(rest) {
            Some(len) => rest = &rest[len..],
            None => return true,
        }
    }
    false
}

/// The length of the terminal report `bytes` starts with, if it starts with one.
fn report_len(bytes: &[u8]) -> Option<usize> {
    match bytes {
        // OSC and DCS answers (colours, terminal names), ended by BEL or ST.
        [0x1b, b']' | b'P', body @ ..] => {
            let end = body.iter().enumerate().find_map(|(i, &b)| match b {
                0x07 => Some(i + 1),
                0x1b if body.get(i + 1) == Some(&b'\\') => Some(i + 2),
                _ => None,
            })?;
            Some(2 + end)
        }
        [0x1b, b'[', body @ ..] => {
            // Parameters and intermediates, then one final byte.
            let params = body
                .iter()
                .take_while(|b| (0x20..0x40).contains(*b))
                .count();
            let last = *body.get(params)?;
            let report = match last {
                // Device attributes, status and cursor position reports, window reports,
                // mode reports, mouse events.
                b'c' | b'n' | b'R' | b't' | b'y' | b'M' | b'm' => true,
                // Focus in and out carry no parameters.
                b'I' | b'O' => params == 0,
                _ => false,
            };
            report.then_some(2 + params + 1)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::has_keypress;

    #[test]
    fn reports_are_not_keys() {
        assert!(!has_keypress(b"\x1b[?1;2c\x1b[>0;276;0c"));
        assert!(!has_keypress(b"\x1b]11;rgb:0f0f/1111/1515\x1b\\\x1b[I"));
        assert!(!has_keypress(b"\x1b[12;40R\x1b[<0;10;5M"));
        assert!(has_keypress(b"1"));
        assert!(has_keypress(b"\x1b[B"));
        assert!(has_keypress(b"\r"));
        assert!(has_keypress(b"\x1b[?1;2cy"));
        assert!(has_keypress(b"\x1b"));
    }
}
