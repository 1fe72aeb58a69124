//! Reading newline-delimited lines from a child's pipe with a bound on their length.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What one call to [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineInfo {
    /// The length of the whole line in bytes, without its terminator.
    pub(crate) len: usize,
    /// Whether the line was longer than the limit; the buffer then holds only its first
    /// `limit` bytes.
    pub(crate) truncated: bool,
}

/// Reads the next line from `reader` into `buf` (cleared first), without its `\n` or `\r\n`
/// terminator. At most `limit` bytes are kept; the rest of an over-long line is read and thrown
/// away, so memory stays bounded whatever the child writes. Returns `Ok(None)` at end of file
/// when no bytes are left; a last line without a terminator is returned as a line.
///
/// Not cancel-safe: dropping the future part-way loses the part of the line read so far.
pub(crate) async fn read_line<R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<LineInfo>>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    let mut len = 0usize;
    let mut last = None;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            if len == 0 {
                return Ok(None);
            }
            break;
        }
        let (part, consumed, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len = len.saturating_add(part.len());
        if let Some(&b) = part.last() {
            last = Some(b);
        }
        reader.consume(consumed);
        if done {
            break;
        }
    }
    if last == Some(b'\r') {
        len -= 1;
        buf.truncate(len);
    }
    Ok(Some(LineInfo {
        len,
        truncated: len > limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all_lines(input: &[u8], limit: usize, cap: usize) -> Vec<(Vec<u8>, LineInfo)> {
        let mut reader = tokio::io::BufReader::with_capacity(cap, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(info) = read_line(&mut reader, &mut buf, limit).await.unwrap() {
            out.push((buf.clone(), info));
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_strips_terminators() {
        let lines = all_lines(b"one\ntwo\r\n\nlast", 100, 2).await;
        let texts: Vec<&[u8]> = lines.iter().map(|(b, _)| b.as_slice()).collect();
        assert_eq!(texts, vec![&b"one"[..], b"two", b"", b"last"]);
        assert!(lines.iter().all(|(_, i)| !i.truncated));
        assert_eq!(lines[1].1.len, 3);
    }

    #[tokio::test]
    async fn over_long_lines_are_cut_and_the_next_line_survives() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        let lines = all_lines(&input, 10, 7).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, vec![b'x'; 10]);
        assert_eq!(
            lines[0].1,
            LineInfo {
                len: 50,
                truncated: true
            }
        );
        assert_eq!(lines[1].0, b"ok");
        assert!(!lines[1].1.truncated);
    }

    #[tokio::test]
    async fn crlf_at_the_limit_is_not_truncation() {
        let lines = all_lines(b"abcd\r\nxy\n", 4, 3).await;
        assert_eq!(lines[0].0, b"abcd");
        assert!(!lines[0].1.truncated);
        assert_eq!(lines[0].1.len, 4);
        assert_eq!(lines[1].0, b"xy");
    }

    #[tokio::test]
    async fn empty_input_is_end_of_file() {
        assert!(all_lines(b"", 10, 4).await.is_empty());
    }
}
