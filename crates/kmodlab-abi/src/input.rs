//! The guest shell's input, as the kernel hands it out (`read_input`, a script from the
//! control channel) and as the shell reads it back into lines, with no length at which
//! anything is silently cut.
//!
//! The kernel's `read_input(buf, cap)` behaves like `read(2)` on a terminal: it copies at most
//! `cap` bytes and never more than one line; a longer line comes in several reads, the rest
//! staying queued ([`ScriptInput`]). The shell reassembles lines with a [`LineReader`], which
//! holds at most its `max` bytes of a line: a longer line is consumed to its end and reported
//! as [`Line::TooLong`] with its full length, never run in part.

use alloc::vec::Vec;

/// A script being read: the whole text, and how much of it the program has read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptInput {
    text: Vec<u8>,
    pos: usize,
}

impl ScriptInput {
    /// A script of `text`'s lines (`\n`-separated; the last may lack its `\n`).
    pub fn new(text: impl Into<Vec<u8>>) -> ScriptInput {
        ScriptInput {
            text: text.into(),
            pos: 0,
        }
    }

    /// The next bytes for a read of at most `cap` bytes: up to the end of the current line
    /// (its `\n` included), at most `cap`; empty only at the end of the script (or when `cap`
    /// is 0, which callers refuse before asking).
    pub fn read(&mut self, cap: usize) -> &[u8] {
        let rest = &self.text[self.pos..];
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let n = line_end.min(cap);
        let start = self.pos;
        self.pos += n;
        &self.text[start..start + n]
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.text.len() - self.pos
    }
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its `\n`.
    Text(Vec<u8>),
    /// A line longer than the reader's maximum, consumed to its end and dropped.
    TooLong {
        /// Its length in bytes, without its `\n`.
        len: usize,
    },
}

/// Reassembles lines from reads of any size, holding at most `max` bytes of one line.
#[derive(Debug, Clone)]
pub struct LineReader {
    max: usize,
    /// Bytes read but not yet returned (a part of the current line, or more).
    pending: Vec<u8>,
    ended: bool,
}

impl LineReader {
    /// A reader of lines of at most `max` bytes (the `\n` not counted).
    pub fn new(max: usize) -> LineReader {
        LineReader {
            max,
            pending: Vec::new(),
            ended: false,
        }
    }

    /// The longest line it returns whole.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The next line, reading more with `read` (which fills a buffer and returns how many
    /// bytes it wrote, 0 at the end of input) as needed; `Ok(None)` at the end of input. A
    /// last line without a `\n` is a line. Memory stays within `max` plus one `chunk`.
    pub fn next_line<E>(
        &mut self,
        chunk: &mut [u8],
        mut read: impl FnMut(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Option<Line>, E> {
        // Bytes of an over-long line already dropped.
        let mut dropped = 0usize;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let rest = self.pending.split_off(i + 1);
                let mut line = core::mem::replace(&mut self.pending, rest);
                line.pop();
                if dropped > 0 || line.len() > self.max {
                    return Ok(Some(Line::TooLong {
                        len: dropped + line.len(),
                    }));
                }
                return Ok(Some(Line::Text(line)));
            }
            if self.pending.len() > self.max {
                dropped += self.pending.len();
                self.pending.clear();
            }
            if self.ended || chunk.is_empty() {
                self.ended = true;
                if dropped > 0 {
                    let len = dropped + self.pending.len();
                    self.pending.clear();
                    return Ok(Some(Line::TooLong { len }));
                }
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Text(core::mem::take(&mut self.pending))));
            }
            let n = read(chunk)?.min(chunk.len());
            if n == 0 {
                self.ended = true;
            } else {
                self.pending.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    /// Reads `script` through the kernel side with reads of `caps` (cycled) and the shell
    /// side with a reader of `max`.
    fn read_all(script: &[u8], caps: &[usize], max: usize) -> Vec<Line> {
        let mut kernel = ScriptInput::new(script.to_vec());
        let mut reader = LineReader::new(max);
        let mut lines = Vec::new();
        let mut i = 0;
        let mut chunk = vec![0u8; 4096];
        loop {
            let cap = caps[i % caps.len()].max(1);
            i += 1;
            let got = reader
                .next_line(&mut chunk[..cap.min(4096)], |buf| {
                    let bytes = kernel.read(buf.len());
                    buf[..bytes.len()].copy_from_slice(bytes);
                    Ok::<usize, ()>(bytes.len())
                })
                .unwrap();
            match got {
                Some(l) => lines.push(l),
                None => break,
            }
        }
        lines
    }

    #[test]
    fn kernel_reads_never_cross_a_line_and_keep_the_rest() {
        let mut s = ScriptInput::new("abcdef\ngh\n\nij");
        assert_eq!(s.read(4), b"abcd");
        assert_eq!(s.read(100), b"ef\n");
        assert_eq!(s.read(100), b"gh\n");
        assert_eq!(s.read(1), b"\n");
        assert_eq!(s.read(100), b"ij");
        assert_eq!(s.remaining(), 0);
        assert_eq!(s.read(100), b"");
        assert_eq!(s.read(0), b"");
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_reassembled_whole() {
        let long = "x".repeat(10_000);
        let script = format!("a\n{long}\nb");
        let lines = read_all(script.as_bytes(), &[4096], 65_536);
        assert_eq!(
            lines,
            vec![
                Line::Text(b"a".to_vec()),
                Line::Text(long.into_bytes()),
                Line::Text(b"b".to_vec()),
            ]
        );
    }

    #[test]
    fn a_line_longer_than_the_maximum_is_reported_with_its_length() {
        let script = format!("ok\n{}\nafter\n{}", "y".repeat(200), "z".repeat(150));
        let lines = read_all(script.as_bytes(), &[7, 64, 1], 100);
        assert_eq!(
            lines,
            vec![
                Line::Text(b"ok".to_vec()),
                Line::TooLong { len: 200 },
                Line::Text(b"after".to_vec()),
                Line::TooLong { len: 150 },
            ]
        );
        // Exactly `max` bytes is still a line.
        let lines = read_all(&[b'q'; 100], &[33], 100);
        assert_eq!(lines, vec![Line::Text(vec![b'q'; 100])]);
    }

    #[test]
    fn errors_of_the_read_pass_through() {
        let mut reader = LineReader::new(10);
        let mut chunk = [0u8; 8];
        assert_eq!(
            reader.next_line(&mut chunk, |_| Err::<usize, _>(14)),
            Err(14)
        );
    }

    proptest! {
        /// Whatever the read sizes, the lines are the script's lines, and a line is dropped
        /// exactly when it is longer than the maximum.
        #[test]
        fn lines_survive_any_chunking(
            lines in proptest::collection::vec("[a-c;]{0,40}", 0..20),
            trailing_newline in any::<bool>(),
            caps in proptest::collection::vec(1usize..50, 1..8),
            max in 1usize..45,
        ) {
            let mut script = lines.join("\n");
            if trailing_newline && !lines.is_empty() {
                script.push('\n');
            }
            let got = read_all(script.as_bytes(), &caps, max);
            let want: Vec<Line> = script
                .split_terminator('\n')
                .map(|l| if l.len() > max {
                    Line::TooLong { len: l.len() }
                } else {
                    Line::Text(l.as_bytes().to_vec())
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
