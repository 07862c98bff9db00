//! Payloads: the large values of an invocation (input, backpacks, output, printed text, error), stored once
//! per distinct content and compressed when that pays.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher as _};

use rusqlite::{Connection, OptionalExtension as _, params};

/// A payload's identity: 128 bits of content hash. Not cryptographic: it only has to make an accidental
/// collision negligible. Should the standard hasher change between Rust versions, equal payloads stop
/// matching old ones (a little more space), never a wrong match.
pub(super) type Hash = [u8; 16];

/// Stored as it is.
pub(super) const PLAIN: i64 = 0;
/// An LZ4 block after its size (a little-endian u32). Codec 1 (deflate) was written only by pre-release
/// builds and is not read.
pub(super) const LZ4: i64 = 2;

/// Smaller values are stored plain: compressing them doesn't pay off, and most payloads (numbers, short
/// strings, `{}`) are that small.
const COMPRESS_FROM: usize = 256;

pub(super) fn hash(bytes: &[u8]) -> Hash {
    let mut out = [0; 16];
    for (seed, half) in out.chunks_exact_mut(8).enumerate() {
        let mut hasher = DefaultHasher::new();
        hasher.write_usize(seed);
        hasher.write(bytes);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    out
}

/// The codec and the bytes to store.
pub(super) fn encode(bytes: &[u8]) -> (i64, Cow<'_, [u8]>) {
    if bytes.len() < COMPRESS_FROM {
        return (PLAIN, Cow::Borrowed(bytes));
    }
    // LZ4 rather than deflate: a recorded run's large values (a fan-out's list, a fan-in's input) are
    // compressed as the run ends, so their time is the run's; deflate takes 2 ms per 600 kB here.
    let compressed = lz4_flex::block::compress_prepend_size(bytes);
    if compressed.len() < bytes.len() {
        (LZ4, Cow::Owned(compressed))
    } else {
        // Incompressible: plain is always right.
        (PLAIN, Cow::Borrowed(bytes))
    }
}

/// The hash → payload id memo is dropped when it grows past this (memory stays bounded on huge runs; the
/// database lookup it saves is only an index probe).
const MEMO_LIMIT: usize = 200_000;

/// Hash → payload id of what one connection stored or found, valid while the database's
/// `payload_generation` stays what it was.
pub(super) type Memo = HashMap<Hash, i64>;

/// The id of the payload row with these contents, stored now if it was not there yet.
pub(super) fn store(conn: &Connection, memo: &mut Memo, bytes: &[u8]) -> rusqlite::Result<i64> {
    let hash = hash(bytes);
    if let Some(&id) = memo.get(&hash) {
        return Ok(id);
    }
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM payloads WHERE hash = ?1")?
        .query_row([&hash[..]], |row| row.get(0))
        .optional()?;
    let id = if let Some(id) = found {
        id
    } else {
        let (codec, data) = encode(bytes);
        conn.prepare_cached(
            "INSERT INTO payloads (hash, codec, size, data) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![&hash[..], codec, bytes.len(), &data[..]])?;
        conn.last_insert_rowid()
    };
    if memo.len() >= MEMO_LIMIT {
        memo.clear();
    }
    memo.insert(hash, id);
    Ok(id)
}

/// Deletes the payloads among `candidates` that no chunk refers to, and bumps `payload_generation` so
/// that every writer drops its memo of payload ids.
pub(super) fn sweep(conn: &Connection, mut candidates: HashSet<i64>) -> rusqlite::Result<()> {
    if !candidates.is_empty() {
        let mut statement = conn.prepare("SELECT id, refs FROM chunks WHERE length(refs) > 0")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let refs: Vec<u8> = row.get(1)?;
            match super::chunk::parse_refs(&refs) {
                Ok(ids) => {
                    for id in ids {
                        candidates.remove(&id);
                    }
                }
                Err(what) => {
                    // What it refers to is unknown: deleting nothing leaves some unused values, deleting
                    // would lose values still in use.
                    let chunk: i64 = row.get(0)?;
                    tracing::warn!("history chunk {chunk} is damaged ({what}); no values deleted");
                    candidates.clear();
                    break;
                }
            }
        }
        let mut delete = conn.prepare("DELETE FROM payloads WHERE id = ?1")?;
        for id in candidates {
            delete.execute([id])?;
        }
    }
    conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'payload_generation'",
        [],
    )?;
    Ok(())
}

pub(super) fn decode(codec: i64, data: Vec<u8>) -> Result<Vec<u8>, String> {
    match codec {
        PLAIN => Ok(data),
        LZ4 => lz4_flex::block::decompress_size_prepended(&data)
            .map_err(|e| format!("a stored value is damaged: {e}")),
        other => Err(format!("a stored value has an unknown encoding ({other})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_plain_and_large_ones_compress_and_round_trip() {
        let small = br#"{"a":1}"#;
        assert_eq!(encode(small).0, PLAIN);
        let large = "abc".repeat(1000).into_bytes();
        let (codec, stored) = encode(&large);
        assert_eq!(codec, LZ4);
        assert!(stored.len() < large.len() / 10);
        assert_eq!(decode(codec, stored.into_owned()).unwrap(), large);
    }

    #[test]
    fn incompressible_values_are_stored_plain() {
        // A xorshift sequence: no repetition for LZ4 to find.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        assert_eq!(encode(&noise).0, PLAIN);
    }

    #[test]
    fn hashes_tell_contents_apart() {
        assert_eq!(hash(b"{}"), hash(b"{}"));
        assert_ne!(hash(b"{}"), hash(b"[]"));
        assert_ne!(hash(b""), hash(b"\0"));
    }

    #[test]
    fn damaged_data_is_an_error_not_a_panic() {
        assert!(decode(LZ4, vec![0xff, 0xff, 0xff]).is_err());
        assert!(decode(LZ4, vec![9, 0, 0, 0, 0xff]).is_err());
        assert!(decode(1, vec![0x4b, 0x04, 0x00]).is_err());
        assert!(decode(7, Vec::new()).is_err());
    }
}
