//! The bounded decompressor of stored batch bodies, for every codec Kafka
//! producers use. Produce validation ([`crate::Limits::decompress`]), the
//! compactor and `strata replay` all decompress with it; the output is
//! capped so that a small body cannot expand without bound (a
//! decompression bomb).

use std::io::Read;

use bytes::Bytes;

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, Compression};

/// Why a stored or produced batch body could not be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The attributes name no codec Kafka knows.
    #[error("unknown codec in batch attributes {attributes}")]
    UnknownCodec {
        /// The batch's attributes.
        attributes: i16,
    },
    /// The codec refused the body.
    #[error("the {codec:?} body is corrupt ({kind})")]
    Corrupt {
        /// The batch's codec.
        codec: Compression,
        /// What the codec reported, as an I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// The body would expand past the limit (a decompression bomb).
    #[error("the body expands past {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Snappy's xerial framing ends inside a block header or block.
    #[error("the xerial snappy framing is truncated")]
    TruncatedFraming,
}

fn corrupt(codec: Compression) -> impl Fn(std::io::Error) -> DecompressError {
    move |error| DecompressError::Corrupt {
        codec,
        kind: error.kind(),
    }
}

/// Returns the uncompressed records of a stored batch (everything after the
/// 61-byte header), decompressing with the codec its attributes name, up to
/// [`DECOMPRESSED_BYTES_MAX`](crate::DECOMPRESSED_BYTES_MAX) bytes.
pub fn batch_body(batch: &Bytes, header: &BatchHeader) -> Result<Bytes, DecompressError> {
    let compressed = batch.slice(BATCH_HEADER_LEN.min(batch.len())..);
    match header.compression() {
        Some(Compression::None) => Ok(compressed),
        Some(codec) => {
            decompress(codec, &compressed, crate::DECOMPRESSED_BYTES_MAX).map(Bytes::from)
        }
        None => Err(DecompressError::UnknownCodec {
            attributes: header.attributes,
        }),
    }
}

/// Decompresses a batch body written with `compression`, refusing to
/// produce more than `limit` bytes.
pub fn decompress(
    compression: Compression,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let read = match compression {
        Compression::None => {
            out.extend_from_slice(body);
            Ok(body.len())
        }
        Compression::Gzip => flate2::read::GzDecoder::new(body)
            .take(cap)
            .read_to_end(&mut out),
        Compression::Snappy => return snappy(body, limit),
        Compression::Lz4 => {
            lz4::Decoder::new(body).and_then(|decoder| decoder.take(cap).read_to_end(&mut out))
        }
        Compression::Zstd => zstd::stream::read::Decoder::new(body)
            .and_then(|decoder| decoder.take(cap).read_to_end(&mut out)),
    };
    read.map_err(corrupt(compression))?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

/// Kafka's snappy: the xerial framing (a magic header, then length-prefixed
/// raw snappy blocks) from the Java client, or one raw block from others.
fn snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
    let mut decoder = snap::raw::Decoder::new();
    let refused = |error: snap::Error| corrupt(Compression::Snappy)(error.into());
    let mut block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let size = snap::raw::decompress_len(compressed).map_err(refused)?;
        if out.len().saturating_add(size) > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + size, 0);
        decoder
            .decompress(compressed, &mut out[start..])
            .map_err(refused)?;
        Ok(())
    };
    let mut out = Vec::new();
    if body.len() >= 16 && body.starts_with(XERIAL_MAGIC) {
        let mut rest = &body[16..];
        while !rest.is_empty() {
            let (length, tail) = rest
                .split_at_checked(4)
                .ok_or(DecompressError::TruncatedFraming)?;
            let length = u32::from_be_bytes(
                length
                    .try_into()
                    .map_err(|_| DecompressError::TruncatedFraming)?,
            ) as usize;
            let (chunk, tail) = tail
                .split_at_checked(length)
                .ok_or(DecompressError::TruncatedFraming)?;
            block(chunk, &mut out)?;
            rest = tail;
        }
    } else {
        block(body, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn records() -> Vec<u8> {
        (0..16_384u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips_and_garbage_is_refused() {
        let plain = records();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&plain).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut lz4 = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz4.write_all(&plain).unwrap();
        let (lz4, finished) = lz4.finish();
        finished.unwrap();
        let zstd = zstd::encode_all(plain.as_slice(), 1).unwrap();
        let snappy = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        for (codec, body) in [
            (Compression::Gzip, gzip),
            (Compression::Lz4, lz4),
            (Compression::Zstd, zstd),
            (Compression::Snappy, snappy),
        ] {
            assert_eq!(
                decompress(codec, &body, 1 << 20).unwrap(),
                plain,
                "{codec:?}"
            );
            assert!(decompress(codec, &body, 100).is_err(), "{codec:?} limit");
            // A truncated body fails or yields less (the record check
            // after decompression refuses that).
            let truncated = decompress(codec, &body[..body.len() / 2], 1 << 20);
            assert!(
                truncated
                    .as_ref()
                    .map_or(true, |out| out.len() < plain.len()),
                "{codec:?} truncated"
            );
            assert!(
                decompress(codec, b"not compressed at all", 1 << 20).is_err(),
                "{codec:?} garbage"
            );
        }
    }
}
