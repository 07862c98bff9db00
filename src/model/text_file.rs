//! Reading a text file a user names (a project, `--input @file`, a values file): a regular file only
//! (a FIFO would block the read, `/dev/zero` would never end it), no larger than [`MAX_BYTES`], and
//! UTF-8, with the line and column of the first byte that is not, and a hint when the file is UTF-16.

use std::io::Read as _;
use std::path::Path;

/// The largest file Braid reads as text: 256 MiB. A project is a few hundred kilobytes even with
/// thousands of blocks, and an input this size already takes gigabytes once parsed.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a file but {0}; Braid reads regular files only")]
    NotAFile(&'static str),
    #[error("a symbolic link, which Braid does not follow in its own folder")]
    Link,
    #[error("larger than {} MiB, the most Braid reads", MAX_BYTES >> 20)]
    TooLarge,
    #[error("the file is UTF-16; save it as UTF-8")]
    Utf16,
    /// Where the first byte that is not UTF-8 is: 1-based line and column (in characters), which
    /// [`ReadError::position`] gives and the message leaves to its caller, as a JSON error's does.
    #[error("not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8")]
    NotUtf8 {
        line: usize,
        column: usize,
        byte: u8,
    },
}

impl ReadError {
    /// The line and column the error is at, when it is at one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::NotUtf8 { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}

/// Whether a link at the path is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// A user's own file may be a link to where it really is.
    Follow,
    /// Files in the project's `.braid/` folder: a link there (from a shared copy of a project, say) must
    /// not make Braid read or write elsewhere.
    Refuse,
}

/// The text of the file at `path` (see the module's description).
pub fn read(path: &Path, links: Links) -> Result<String, ReadError> {
    decode(read_bytes(path, links)?)
}

/// The bytes of the regular file at `path`, at most [`MAX_BYTES`] of them.
pub fn read_bytes(path: &Path, links: Links) -> Result<Vec<u8>, ReadError> {
    let meta = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    if meta.file_type().is_symlink() {
        return Err(ReadError::Link);
    }
    check_regular(&meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Non-blocking: should the path become a FIFO after the check above, opening it does not wait
        // for a writer; no link followed either, when asked.
        let mut flags = rustix::fs::OFlags::NONBLOCK;
        if links == Links::Refuse {
            flags |= rustix::fs::OFlags::NOFOLLOW;
        }
        options.custom_flags(flags.bits().cast_signed());
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    check_regular(&meta)?;
    if meta.len() > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // A file that grows while read, or reports no size (`/proc`), still stops at the limit.
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

fn check_regular(meta: &std::fs::Metadata) -> Result<(), ReadError> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(ReadError::NotAFile("a folder"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return Err(ReadError::NotAFile("a named pipe (FIFO)"));
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Err(ReadError::NotAFile("a device"));
        }
        if kind.is_socket() {
            return Err(ReadError::NotAFile("a socket"));
        }
    }
    Err(ReadError::NotAFile("something other than a file"))
}

/// The bytes as UTF-8 text; what is wrong with them otherwise.
pub fn decode(bytes: Vec<u8>) -> Result<String, ReadError> {
    if looks_like_utf16(&bytes) {
        return Err(ReadError::Utf16);
    }
    String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let at = error.utf8_error().valid_up_to();
        // Everything before `at` is UTF-8.
        let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ReadError::NotUtf8 {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            byte: bytes[at],
        }
    })
}

/// A UTF-16 byte order mark, or text whose first characters are ASCII with a NUL byte beside each (as
/// Windows tools write UTF-16 without a mark). Text in UTF-8 has no NUL bytes.
fn looks_like_utf16(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return true;
    }
    let head = &bytes[..bytes.len().min(64) & !1];
    !head.is_empty()
        && (head.chunks(2).all(|pair| pair[0] != 0 && pair[1] == 0)
            || head.chunks(2).all(|pair| pair[0] == 0 && pair[1] != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_have_a_line_and_column() {
        let error = decode(b"{\n  \"name\": \"caf\xe9\"\n}".to_vec()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "not UTF-8 text (byte 0xe9); save the file as UTF-8"
        );
        assert_eq!(error.position(), Some((2, 15)));
        // Columns count characters, not bytes.
        let error = decode(["é\u{1F600}".as_bytes(), &[0xff]].concat()).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::NotUtf8 {
                    line: 1,
                    column: 3,
                    byte: 0xff
                }
            ),
            "{error}"
        );
        assert_eq!(decode(b"{}".to_vec()).unwrap(), "{}");
    }

    #[test]
    fn utf16_with_or_without_a_byte_order_mark_is_named() {
        let little: Vec<u8> = "{\"a\": 1}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let big: Vec<u8> = "{\"a\": 1}"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let with_bom = [&[0xff, 0xfe][..], &little].concat();
        for bytes in [little, big, with_bom] {
            assert_eq!(
                decode(bytes).unwrap_err().to_string(),
                "the file is UTF-16; save it as UTF-8"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_and_links_in_braids_folder_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert_eq!(
            read(&fifo, Links::Follow).unwrap_err().to_string(),
            "not a file but a named pipe (FIFO); Braid reads regular files only"
        );
        assert_eq!(
            read(Path::new("/dev/zero"), Links::Follow)
                .unwrap_err()
                .to_string(),
            "not a file but a device; Braid reads regular files only"
        );
        assert_eq!(
            read(dir.path(), Links::Follow).unwrap_err().to_string(),
            "not a file but a folder; Braid reads regular files only"
        );

        let target = dir.path().join("target");
        std::fs::write(&target, "A=1\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read(&link, Links::Follow).unwrap(), "A=1\n");
        assert!(matches!(read(&link, Links::Refuse), Err(ReadError::Link)));
    }

    #[test]
    fn a_file_past_the_limit_is_refused_without_being_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        // Sparse: no disk space, and no time reading it, since its size alone refuses it.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_BYTES + 1)
            .unwrap();
        assert_eq!(
            read(&big, Links::Follow).unwrap_err().to_string(),
            "larger than 256 MiB, the most Braid reads"
        );
    }
}
