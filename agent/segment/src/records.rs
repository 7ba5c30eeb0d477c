//! Framing of the records inside an uncompressed v2 batch.
//!
//! Each record is `length varint | attributes i8 | timestamp_delta varlong |
//! offset_delta varint | key_length varint | key | value_length varint |
//! value | header_count varint | headers`, each header being
//! `key_length varint | key | value_length varint | value`. Varints are
//! zig-zag encoded, as in protobuf. Strata never decodes records to serve
//! them; this module only checks framing on produce, and encodes records for
//! test batches.

use crate::error::RecordError;

/// Checks that `body` holds exactly `records_count` well-framed records whose
/// offset deltas count up from 0.
///
/// Returns the failing record's index with the reason. Work is bounded by
/// `body.len()`: every record consumes at least one byte.
pub(crate) fn check_records(body: &[u8], records_count: i32) -> Result<(), (usize, RecordError)> {
    let mut cursor = Cursor { bytes: body };
    let count = usize::try_from(records_count).unwrap_or(0);
    for index in 0..count {
        check_record(&mut cursor, index).map_err(|reason| (index, reason))?;
    }
    if cursor.bytes.is_empty() {
        Ok(())
    } else {
        Err((count, RecordError::TrailingBytes))
    }
}

fn check_record(cursor: &mut Cursor<'_>, index: usize) -> Result<(), RecordError> {
    let length = cursor.varint()?;
    let length = usize::try_from(length).map_err(|_| RecordError::InvalidLength(length))?;
    let mut record = Cursor {
        bytes: cursor.take(length)?,
    };
    record.take(1)?; // attributes: unused in v2
    record.varlong()?; // timestamp delta: any value
    let offset_delta = record.varint()?;
    if usize::try_from(offset_delta).ok() != Some(index) {
        return Err(RecordError::OffsetDelta {
            expected: i64::try_from(index).unwrap_or(i64::MAX),
            found: offset_delta,
        });
    }
    record.nullable_bytes()?; // key
    record.nullable_bytes()?; // value
    let header_count = record.varint()?;
    if header_count < 0 {
        return Err(RecordError::InvalidLength(header_count));
    }
    for _ in 0..header_count {
        // Kafka rejects a null header key; a null header value is allowed.
        let key_length = record.varint()?;
        let key_length =
            usize::try_from(key_length).map_err(|_| RecordError::InvalidLength(key_length))?;
        record.take(key_length)?;
        record.nullable_bytes()?;
    }
    if record.bytes.is_empty() {
        Ok(())
    } else {
        Err(RecordError::LengthMismatch)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], RecordError> {
        let Some((head, tail)) = self.bytes.split_at_checked(length) else {
            return Err(RecordError::Truncated);
        };
        self.bytes = tail;
        Ok(head)
    }

    /// A zig-zag varint of at most 5 bytes (a Java `int`).
    fn varint(&mut self) -> Result<i64, RecordError> {
        self.zigzag(5)
    }

    /// A zig-zag varlong of at most 10 bytes (a Java `long`).
    fn varlong(&mut self) -> Result<i64, RecordError> {
        self.zigzag(10)
    }

    fn zigzag(&mut self, max_bytes: u32) -> Result<i64, RecordError> {
        let mut raw: u64 = 0;
        for position in 0..max_bytes {
            let [byte] = self.take(1)? else {
                return Err(RecordError::Truncated);
            };
            raw |= u64::from(byte & 0x7f) << (7 * position);
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(RecordError::VarintTooLong)
    }

    /// A length-prefixed byte string where length -1 means null.
    fn nullable_bytes(&mut self) -> Result<(), RecordError> {
        match self.varint()? {
            -1 => Ok(()),
            length => {
                let length =
                    usize::try_from(length).map_err(|_| RecordError::InvalidLength(length))?;
                self.take(length).map(|_| ())
            }
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
/// Appends `value` as a zig-zag varint (protobuf `sint64` encoding).
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

#[cfg(any(test, feature = "test-util"))]
/// Encodes one record with no headers; the timestamp delta is `offset_delta`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let mut body = Vec::new();
    body.push(0); // attributes
    put_varint(&mut body, i64::from(offset_delta)); // timestamp delta
    put_varint(&mut body, i64::from(offset_delta));
    for field in [key, value] {
        match field {
            Some(bytes) => {
                put_varint(&mut body, bytes.len() as i64);
                body.extend_from_slice(bytes);
            }
            None => put_varint(&mut body, -1),
        }
    }
    put_varint(&mut body, 0); // header count
    put_varint(out, body.len() as i64);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::KeyValue;

    fn encode(records: &[KeyValue<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (delta, (key, value)) in records.iter().enumerate() {
            encode_record(&mut out, delta as i32, *key, *value);
        }
        out
    }

    #[test]
    fn varints_round_trip_through_the_decoder() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut cursor = Cursor { bytes: &out };
            assert_eq!(cursor.varint().unwrap(), value);
            assert!(cursor.bytes.is_empty());
        }
        let mut out = Vec::new();
        put_varint(&mut out, i64::MIN);
        assert_eq!(Cursor { bytes: &out }.varlong().unwrap(), i64::MIN);
        assert_eq!(
            Cursor { bytes: &out }.varint(),
            Err(RecordError::VarintTooLong)
        );
    }

    #[test]
    fn well_formed_records_pass() {
        let body = encode(&[
            (Some(b"k"), Some(b"v")),
            (None, None),
            (None, Some(&[7; 300])),
        ]);
        assert_eq!(check_records(&body, 3), Ok(()));
    }

    #[test]
    fn count_mismatch_and_trailing_bytes_fail() {
        let body = encode(&[(Some(b"k"), Some(b"v")), (None, None)]);
        assert_eq!(check_records(&body, 3), Err((2, RecordError::Truncated)));
        assert_eq!(
            check_records(&body, 1),
            Err((1, RecordError::TrailingBytes))
        );
    }

    #[test]
    fn offset_deltas_must_count_from_zero() {
        let mut body = Vec::new();
        encode_record(&mut body, 1, None, None);
        let error = check_records(&body, 1).unwrap_err();
        assert_eq!(
            error,
            (
                0,
                RecordError::OffsetDelta {
                    expected: 0,
                    found: 1
                }
            )
        );
    }

    #[test]
    fn negative_lengths_fail() {
        let mut body = Vec::new();
        put_varint(&mut body, -5);
        assert_eq!(
            check_records(&body, 1),
            Err((0, RecordError::InvalidLength(-5)))
        );
    }
}
