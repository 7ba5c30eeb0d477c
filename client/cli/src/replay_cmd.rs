//! `strata replay` and `strata export`: a topic's records read straight
//! from the object store, with no agent. The catalog (gRPC) lists each
//! partition's chunks; segment chunks are fetched by byte range and their
//! Kafka v2 batches decoded (any codec), Parquet-tier chunks are read with
//! only the row groups that can hold wanted offsets. So a topic can be
//! copied out even while every agent is down.
//!
//! This lives in the binary, not in the `strata_client` library: it needs
//! the Parquet stack and server crates that an application linking the
//! library should not pull in (DESIGN.md "Where the binary lives").

mod output;
mod parquet_chunk;
mod source;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use self::output::RecordSink;
use self::source::{Bounds, PartitionPlan, Source};
use crate::cli::{ExportArgs, OutputFormat, ReadArgs, ReplayArgs};

/// Runs `strata replay`: records to stdout or `--output`, then a summary
/// (to stderr when the records went to stdout).
pub(crate) async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplayArgs {
        read,
        format,
        output,
    } = args;
    let (source, plans) = open(&read).await?;
    let out: Box<dyn Write + Send> = match &output {
        Some(path) => Box::new(create(path)?),
        None => Box::new(std::io::stdout()),
    };
    let progress = Progress::new(&plans, read.quiet);
    let started = Instant::now();
    let mut sink = output::open(format, read.binary, out)?;
    let mut partitions = Vec::with_capacity(plans.len());
    for plan in &plans {
        let mut report = copy(&source, plan, sink.as_mut(), &progress).await?;
        report.file = output.as_ref().map(|p| p.display().to_string());
        partitions.push(report);
    }
    let bytes_written = sink.finish()?;
    progress.finish();
    let summary = Summary::new(&source, partitions, bytes_written, started.elapsed());
    if read.quiet {
        return Ok(());
    }
    let text = summary.render(read.json, false)?;
    if output.is_some() {
        write_stdout(&text)
    } else {
        eprint!("{text}");
        Ok(())
    }
}

/// Runs `strata export`: one file per partition in a directory, or one
/// file for all, then a summary table on stdout.
pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let ExportArgs {
        read,
        format,
        output,
    } = args;
    let (source, plans) = open(&read).await?;
    let single_file = output
        .extension()
        .is_some_and(|e| ["parquet", "jsonl", "csv"].contains(&e.to_string_lossy().as_ref()));
    if !single_file {
        std::fs::create_dir_all(&output)
            .with_context(|| format!("cannot create the directory {}", output.display()))?;
    }
    let progress = Progress::new(&plans, read.quiet);
    let started = Instant::now();
    let mut partitions = Vec::with_capacity(plans.len());
    let mut bytes_written = 0;
    if single_file {
        let mut sink = output::open(format, read.binary, Box::new(create(&output)?))?;
        for plan in &plans {
            let mut report = copy(&source, plan, sink.as_mut(), &progress).await?;
            report.file = Some(output.display().to_string());
            partitions.push(report);
        }
        bytes_written += sink.finish()?;
    } else {
        for plan in &plans {
            let path = partition_file(&output, source.topic(), plan.partition, format);
            let mut sink = output::open(format, read.binary, Box::new(create(&path)?))?;
            let mut report = copy(&source, plan, sink.as_mut(), &progress).await?;
            bytes_written += sink.finish()?;
            report.file = Some(path.display().to_string());
            partitions.push(report);
        }
    }
    progress.finish();
    let summary = Summary::new(&source, partitions, bytes_written, started.elapsed());
    if read.quiet {
        return Ok(());
    }
    write_stdout(&summary.render(read.json, true)?)
}

/// `<dir>/<topic>-<partition>.<extension>`.
fn partition_file(dir: &Path, topic: &str, partition: i32, format: OutputFormat) -> PathBuf {
    dir.join(format!("{topic}-{partition}.{}", format.extension()))
}

/// Opens the topic and resolves every partition's range (the high
/// watermarks as they are now bound the read).
async fn open(read: &ReadArgs) -> anyhow::Result<(Source, Vec<PartitionPlan>)> {
    let source = Source::open(read).await?;
    let bounds = Bounds {
        from_offset: read.from_offset,
        from_time: read.from_time,
        to_offset: read.to_offset,
        to_time: read.to_time,
    };
    let mut plans = Vec::new();
    for partition in source.partitions(&read.partition)? {
        plans.push(source.plan(partition, &bounds).await?);
    }
    Ok((source, plans))
}

fn create(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// Copies one partition into `sink`.
async fn copy(
    source: &Source,
    plan: &PartitionPlan,
    sink: &mut dyn RecordSink,
    progress: &Progress,
) -> anyhow::Result<PartitionReport> {
    let topic = source.topic();
    let mut last_offset = None;
    let read = source
        .read_partition(plan, |record| {
            progress.advance(plan, record.offset);
            last_offset = Some(record.offset);
            sink.write(topic, record)
        })
        .await?;
    progress.partition_done(plan);
    Ok(PartitionReport {
        partition: plan.partition,
        start_offset: plan.start,
        end_offset: plan.end,
        last_offset,
        records: read.records,
        bytes_read: read.bytes_read,
        file: None,
    })
}

/// A progress bar over the offsets to read, on stderr: hidden when stderr
/// is not a terminal or with `--quiet`.
struct Progress {
    bar: ProgressBar,
    /// Offsets of the partitions finished before the current one.
    done: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(plans: &[PartitionPlan], quiet: bool) -> Self {
        let total: i64 = plans.iter().map(|p| p.end - p.start).sum();
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(
                Some(u64::try_from(total).unwrap_or(0)),
                ProgressDrawTarget::stderr(),
            )
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} offsets, {per_sec}, ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            done: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Moves the bar to `offset`; only every 1024th offset, which is
    /// plenty for the eye and keeps the bar off the per-record path.
    fn advance(&self, plan: &PartitionPlan, offset: i64) {
        if offset % 1024 != 0 {
            return;
        }
        let within = u64::try_from(offset + 1 - plan.start).unwrap_or(0);
        let done = self.done.load(std::sync::atomic::Ordering::Relaxed);
        self.bar.set_position(done + within);
    }

    fn partition_done(&self, plan: &PartitionPlan) {
        let offsets = u64::try_from(plan.end - plan.start).unwrap_or(0);
        let done = self
            .done
            .fetch_add(offsets, std::sync::atomic::Ordering::Relaxed)
            + offsets;
        self.bar.set_position(done);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// One partition of the summary.
#[derive(Debug, Serialize)]
struct PartitionReport {
    partition: i32,
    /// The resolved range `start_offset..end_offset`.
    start_offset: i64,
    end_offset: i64,
    /// Offset of the last record written, if any.
    last_offset: Option<i64>,
    records: u64,
    /// Bytes fetched from the object store (compressed).
    bytes_read: u64,
    file: Option<String>,
}

/// The `--json` document (and the text summary's numbers).
#[derive(Debug, Serialize)]
struct Summary {
    topic: String,
    records: u64,
    bytes_read: u64,
    bytes_written: u64,
    duration_ms: u64,
    records_per_second: f64,
    partitions: Vec<PartitionReport>,
}

impl Summary {
    fn new(
        source: &Source,
        partitions: Vec<PartitionReport>,
        bytes_written: u64,
        elapsed: Duration,
    ) -> Self {
        let records = partitions.iter().map(|p| p.records).sum();
        let seconds = elapsed.as_secs_f64().max(1e-6);
        Self {
            topic: source.topic().to_owned(),
            records,
            bytes_read: partitions.iter().map(|p| p.bytes_read).sum(),
            bytes_written,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            records_per_second: (records as f64 / seconds).round(),
            partitions,
        }
    }

    /// JSON, or a text line (with a per-partition table for `export`).
    fn render(&self, json: bool, table: bool) -> anyhow::Result<String> {
        if json {
            let mut text = serde_json::to_string_pretty(self)?;
            text.push('\n');
            return Ok(text);
        }
        let mut text = String::new();
        if table {
            let rows: Vec<Vec<String>> = self
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        format!("{}..{}", p.start_offset, p.end_offset),
                        p.records.to_string(),
                        p.file.clone().unwrap_or_else(|| "-".to_owned()),
                    ]
                })
                .collect();
            text.push_str(&crate::group_cmd::table::render(
                &["PARTITION", "OFFSETS", "RECORDS", "FILE"],
                &rows,
            ));
        }
        text.push_str(&format!(
            "{} records of `{}` from {} partitions ({} bytes read, {} written) in {:.2} s, \
             {} records/s\n",
            self.records,
            self.topic,
            self.partitions.len(),
            self.bytes_read,
            self.bytes_written,
            self.duration_ms as f64 / 1000.0,
            self.records_per_second
        ));
        Ok(text)
    }
}
