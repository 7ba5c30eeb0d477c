//! Writing records out: JSON lines, CSV or Parquet, all with the same
//! fields: topic, partition, offset, timestamp (milliseconds and ISO 8601
//! UTC), timestamp type, key, value, headers.
//!
//! Text formats cannot hold arbitrary bytes, so keys, values and header
//! values follow `--binary` (see docs/replay.md); header keys are always
//! written as with `auto`. Parquet keeps the raw bytes.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use base64::Engine;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::source::Record;
use crate::cli::{BinaryEncoding, OutputFormat};

/// Parquet output rows per row-group flush of the Arrow buffers.
const PARQUET_BATCH_ROWS: usize = 8192;

/// Where records go.
pub(crate) trait RecordSink: Send {
    /// Writes one record.
    fn write(&mut self, topic: &str, record: &Record) -> anyhow::Result<()>;
    /// Flushes and closes the output; returns the bytes written.
    fn finish(self: Box<Self>) -> anyhow::Result<u64>;
}

/// A sink of `format` over `out`.
pub(crate) fn open(
    format: OutputFormat,
    binary: BinaryEncoding,
    out: Box<dyn Write + Send>,
) -> anyhow::Result<Box<dyn RecordSink>> {
    let out = Counting {
        inner: out,
        bytes: 0,
    };
    Ok(match format {
        OutputFormat::Jsonl => Box::new(JsonLines {
            out: BufWriter::with_capacity(1 << 20, out),
            binary,
            iso: IsoTime::default(),
        }),
        OutputFormat::Csv => {
            let mut out = BufWriter::with_capacity(1 << 20, out);
            out.write_all(CSV_HEADER.as_bytes())?;
            Box::new(Csv {
                out,
                binary,
                iso: IsoTime::default(),
            })
        }
        OutputFormat::Parquet => Box::new(ParquetSink::new(out)?),
    })
}

/// Counts the bytes passing through.
struct Counting {
    inner: Box<dyn Write + Send>,
    bytes: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The ISO 8601 text of the last timestamp formatted: the records of a
/// batch mostly share their millisecond.
#[derive(Debug, Default)]
struct IsoTime {
    ms: Option<i64>,
    text: String,
}

impl IsoTime {
    fn format(&mut self, ms: i64) -> &str {
        if self.ms != Some(ms) {
            self.ms = Some(ms);
            self.text = crate::group_cmd::format_datetime_ms(ms);
        }
        &self.text
    }
}

/// A key, value or header as JSON text: a string, or `{"base64": "..."}`
/// for bytes that are not UTF-8 under `--binary auto`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
enum Text<'a> {
    Plain(Cow<'a, str>),
    Base64 { base64: String },
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn text(bytes: &[u8], binary: BinaryEncoding) -> Text<'_> {
    match binary {
        BinaryEncoding::Auto => match std::str::from_utf8(bytes) {
            Ok(text) => Text::Plain(Cow::Borrowed(text)),
            Err(_) => Text::Base64 {
                base64: base64(bytes),
            },
        },
        BinaryEncoding::Base64 => Text::Plain(Cow::Owned(base64(bytes))),
        BinaryEncoding::Hex => Text::Plain(Cow::Owned(hex(bytes))),
        BinaryEncoding::Utf8Lossy => Text::Plain(String::from_utf8_lossy(bytes)),
    }
}

fn timestamp_type(record: &Record) -> &'static str {
    if record.log_append_time {
        "LogAppendTime"
    } else {
        "CreateTime"
    }
}

#[derive(Debug, Serialize)]
struct JsonHeader<'a> {
    key: Text<'a>,
    value: Option<Text<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    timestamp_iso: &'a str,
    timestamp_type: &'static str,
    key: Option<Text<'a>>,
    value: Option<Text<'a>>,
    headers: Vec<JsonHeader<'a>>,
}

fn json_headers(record: &Record, binary: BinaryEncoding) -> Vec<JsonHeader<'_>> {
    record
        .headers
        .iter()
        .map(|(key, value)| JsonHeader {
            key: text(key, BinaryEncoding::Auto),
            value: value.as_deref().map(|v| text(v, binary)),
        })
        .collect()
}

struct JsonLines {
    out: BufWriter<Counting>,
    binary: BinaryEncoding,
    iso: IsoTime,
}

impl RecordSink for JsonLines {
    fn write(&mut self, topic: &str, record: &Record) -> anyhow::Result<()> {
        let json = JsonRecord {
            topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp_ms,
            timestamp_iso: self.iso.format(record.timestamp_ms),
            timestamp_type: timestamp_type(record),
            key: record.key.as_deref().map(|k| text(k, self.binary)),
            value: record.value.as_deref().map(|v| text(v, self.binary)),
            headers: json_headers(record, self.binary),
        };
        serde_json::to_writer(&mut self.out, &json)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<u64> {
        let out = self.out.into_inner().map_err(|e| e.into_error())?;
        let mut out = out;
        out.flush()?;
        Ok(out.bytes)
    }
}

const CSV_HEADER: &str = "topic,partition,offset,timestamp,timestamp_iso,timestamp_type,\
key,key_encoding,value,value_encoding,headers\r\n";

struct Csv {
    out: BufWriter<Counting>,
    binary: BinaryEncoding,
    iso: IsoTime,
}

impl Csv {
    /// A field, quoted when it holds a comma, quote, CR or LF (RFC 4180).
    fn field(&mut self, value: &str) -> std::io::Result<()> {
        if value.contains([',', '"', '\r', '\n']) {
            self.out.write_all(b"\"")?;
            self.out.write_all(value.replace('"', "\"\"").as_bytes())?;
            self.out.write_all(b"\"")
        } else {
            self.out.write_all(value.as_bytes())
        }
    }

    /// The value and its encoding column: `null` (empty value), `utf8`,
    /// `base64`, `hex` or `utf8-lossy`.
    fn bytes_field(&mut self, bytes: Option<&[u8]>) -> std::io::Result<()> {
        let (value, encoding) = match bytes.map(|b| (text(b, self.binary), b)) {
            None => (Cow::Borrowed(""), "null"),
            Some((Text::Base64 { base64 }, _)) => (Cow::Owned(base64), "base64"),
            Some((Text::Plain(value), raw)) => (
                value,
                match self.binary {
                    BinaryEncoding::Auto => "utf8",
                    BinaryEncoding::Base64 => "base64",
                    BinaryEncoding::Hex => "hex",
                    BinaryEncoding::Utf8Lossy if std::str::from_utf8(raw).is_ok() => "utf8",
                    BinaryEncoding::Utf8Lossy => "utf8-lossy",
                },
            ),
        };
        self.field(&value)?;
        self.out.write_all(b",")?;
        self.out.write_all(encoding.as_bytes())
    }
}

impl RecordSink for Csv {
    fn write(&mut self, topic: &str, record: &Record) -> anyhow::Result<()> {
        self.field(topic)?;
        write!(
            self.out,
            ",{},{},{},{},{},",
            record.partition,
            record.offset,
            record.timestamp_ms,
            self.iso.format(record.timestamp_ms),
            timestamp_type(record)
        )?;
        self.bytes_field(record.key.as_deref())?;
        self.out.write_all(b",")?;
        self.bytes_field(record.value.as_deref())?;
        self.out.write_all(b",")?;
        let headers = serde_json::to_string(&json_headers(record, self.binary))?;
        self.field(&headers)?;
        self.out.write_all(b"\r\n")?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<u64> {
        let mut out = self.out.into_inner().map_err(|e| e.into_error())?;
        out.flush()?;
        Ok(out.bytes)
    }
}

/// The Arrow schema of Parquet output.
pub(crate) fn parquet_schema() -> SchemaRef {
    let header = Fields::from(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("value", DataType::Binary, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestamp_type", DataType::Utf8, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new(
            "headers",
            DataType::List(Arc::new(Field::new(
                "element",
                DataType::Struct(header),
                false,
            ))),
            false,
        ),
    ]))
}

struct ParquetSink {
    writer: ArrowWriter<Counting>,
    schema: SchemaRef,
    rows: usize,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: StringBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    header_offsets: Vec<i32>,
    header_keys: BinaryBuilder,
    header_values: BinaryBuilder,
}

impl ParquetSink {
    fn new(out: Counting) -> anyhow::Result<Self> {
        let schema = parquet_schema();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(out, schema.clone(), Some(properties))?,
            schema,
            rows: 0,
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            timestamp_type: StringBuilder::new(),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            header_offsets: vec![0],
            header_keys: BinaryBuilder::new(),
            header_values: BinaryBuilder::new(),
        })
    }

    fn flush_rows(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let Some(DataType::List(item)) = self.schema.fields().get(7).map(|f| f.data_type()) else {
            anyhow::bail!("the output schema lost its headers column");
        };
        let DataType::Struct(header_fields) = item.data_type() else {
            anyhow::bail!("the output schema lost its header struct");
        };
        let entries = StructArray::try_new(
            header_fields.clone(),
            vec![
                Arc::new(self.header_keys.finish()) as ArrayRef,
                Arc::new(self.header_values.finish()),
            ],
            None,
        )?;
        let offsets = std::mem::replace(&mut self.header_offsets, vec![0]);
        let headers = ListArray::try_new(
            item.clone(),
            OffsetBuffer::new(offsets.into()),
            Arc::new(entries),
            None,
        )?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(headers),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.writer.write(&batch)?;
        self.rows = 0;
        Ok(())
    }
}

impl RecordSink for ParquetSink {
    fn write(&mut self, topic: &str, record: &Record) -> anyhow::Result<()> {
        self.topic.append_value(topic);
        self.partition.append_value(record.partition);
        self.offset.append_value(record.offset);
        self.timestamp.append_value(record.timestamp_ms);
        self.timestamp_type.append_value(timestamp_type(record));
        self.key.append_option(record.key.as_deref());
        self.value.append_option(record.value.as_deref());
        for (key, value) in &record.headers {
            self.header_keys.append_value(key);
            self.header_values.append_option(value.as_deref());
        }
        let count = i32::try_from(self.header_keys.len())
            .context("more than 2^31 header entries in one output batch")?;
        self.header_offsets.push(count);
        self.rows += 1;
        if self.rows >= PARQUET_BATCH_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<u64> {
        self.flush_rows()?;
        let mut out = self.writer.into_inner()?;
        out.flush()?;
        Ok(out.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_text_is_utf8_when_valid_and_marked_base64_otherwise() {
        assert_eq!(
            text(b"caf\xc3\xa9", BinaryEncoding::Auto),
            Text::Plain(Cow::Borrowed("café"))
        );
        let json = serde_json::to_string(&text(&[0xff, 0x00], BinaryEncoding::Auto)).unwrap();
        assert_eq!(json, r#"{"base64":"/wA="}"#);
        assert_eq!(
            text(&[0xff, 0x00], BinaryEncoding::Hex),
            Text::Plain(Cow::Borrowed("ff00"))
        );
        assert_eq!(
            text(b"a\xffb", BinaryEncoding::Utf8Lossy),
            Text::Plain(Cow::Borrowed("a\u{fffd}b"))
        );
    }

    #[test]
    fn csv_quotes_fields_with_separators() {
        let record = Record {
            partition: 1,
            offset: 7,
            timestamp_ms: 0,
            log_append_time: false,
            key: None,
            value: Some(bytes::Bytes::from_static(b"a,\"b\"\nc")),
            headers: vec![(bytes::Bytes::from_static(b"h"), None)],
        };
        let (out, sink) = shared_buffer();
        let mut csv = open(OutputFormat::Csv, BinaryEncoding::Auto, sink).unwrap();
        csv.write("t", &record).unwrap();
        csv.finish().unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let row = text.lines().nth(1).unwrap().to_owned();
        assert!(text.starts_with("topic,partition,offset,"), "{text}");
        assert!(
            text.contains(
                "t,1,7,0,1970-01-01T00:00:00.000Z,CreateTime,,null,\"a,\"\"b\"\"\nc\",utf8,\
                 \"[{\"\"key\"\":\"\"h\"\",\"\"value\"\":null}]\"\r\n"
            ),
            "{row:?} in {text:?}"
        );
    }

    type Shared = Arc<std::sync::Mutex<Vec<u8>>>;

    fn shared_buffer() -> (Shared, Box<dyn Write + Send>) {
        struct Sink(Shared);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let shared = Shared::default();
        (shared.clone(), Box::new(Sink(shared)))
    }
}
