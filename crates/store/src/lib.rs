//! The TimeKD embedding store: one self-describing HDF5 file of teacher embeddings per
//! (dataset, output length, split), written resumably and read with random access.
//!
//! # File format
//!
//! A finished store is one HDF5 file readable by h5py:
//! - `embeddings`: `[windows, n_vars, d_model]`, f32 (default) or f16, chunked one window
//!   per chunk, uncompressed;
//! - `complete`: `[windows]` u8, 1 for every written window (the completion record);
//! - `window_sha256`: `[windows, 32]` u8, the SHA-256 of each window's stored bytes
//!   (little-endian values in the store's dtype);
//! - root attributes: every field of [`Fingerprint`] under its own name (strings,
//!   unsigned integers, `columns` as a string array) plus `windows_total`,
//!   `window_start`, `window_end` (the global window range; a shard covers part of it) and
//!   `embeddings_sha256`, the hex SHA-256 of all windows' stored bytes in window order
//!   (`hashlib.sha256(f["embeddings"][...].astype("<f4").tobytes())` for f32). Stores
//!   finished before checksums were recorded lack the last two; they read as before.
//!
//! # Crash safety
//!
//! HDF5 files are not crash-safe, so the HDF5 file is written only once, at the end.
//! While a store at `train.h5` is in progress, its state lives in `train.h5.parts/`:
//! - `manifest.json`: the fingerprint and window range, written before any part;
//! - `part-NNNNNNNN.bin`: a batch of completed windows (indices, values in the store's
//!   dtype, SHA-256 trailer);
//! - `lock`: held (`flock`) by the one live writer (or merge); the lock dies with its
//!   process. The holder writes `pid P on host H since T` into it, so a second writer is
//!   refused at once with [`StoreError::Locked`] naming them (the text is information only:
//!   a dead holder's lock does not block).
//!
//! Every file is written to `<name>.tmp`, fsynced, renamed into place and the directory
//! fsynced, so a name always refers to complete content. Killed at any instant, a writer
//! leaves at worst a `.tmp` file, which the next [`StoreWriter::open`] deletes; it then
//! validates every part (size and checksum), deletes damaged ones and resumes with
//! [`StoreWriter::missing`]. Lost work is bounded by the windows buffered and not yet
//! in a part ([`WriterOptions::part_windows`]). [`StoreWriter::finish`] assembles
//! `train.h5.tmp` from the parts in window order, fsyncs and renames it to `train.h5`,
//! then removes the parts directory; a crash in between leaves either the parts (finish
//! again) or the final file plus stale parts (removed on the next open). Since values are
//! copied bit for bit and the HDF5 file is assembled in one deterministic pass, an
//! interrupted run ends with the same content as an uninterrupted one; only the
//! `created` attribute (the time of the first open) differs between separate runs.
//!
//! # Fault model
//!
//! What a writer survives, each tested in `tests/faults.rs` and `tests/crash.rs` with real
//! child processes:
//!
//! - **Killed** (SIGKILL, a node failure) at any instant: between parts (random kills),
//!   and at every fault-injection point inside [`StoreWriter::finish`], [`merge`] and
//!   [`export_release`] (the points are enumerated by tracing a run, then each is killed
//!   and the operation rerun): the rerun's files equal an uninterrupted run's byte for byte
//!   (but for `created`).
//! - **Out of space** (`ENOSPC`, `EDQUOT`, or `EFBIG` past the file-size limit): every
//!   write returns [`StoreError::DiskFull`] naming the file and the bytes it needed, and
//!   removes its temporary file; what was durable stays. Before assembling a final file
//!   (finish, merge), its size is estimated and compared with the file system's free space
//!   (`statvfs`), so a full disk is refused before hours of parts are read. HDF5 reports
//!   its write errors less precisely: the store finds the system error in HDF5's error
//!   stack. A rerun after space is freed finishes with the same result.
//! - **Two writers**: the lock refuses the second (writer, extraction or merge) at once,
//!   naming the first's pid and host. Shards that overlap or miss windows are refused by
//!   [`merge`] with the ranges named ([`StoreError::Coverage`]).
//! - **Damage after the fact** (a bad copy between machines, a failing disk): [`verify`]
//!   reads the whole file (one pass, about a second per GB) and names the first window
//!   that differs from its digest ([`StoreError::ChecksumMismatch`]); [`merge`] and
//!   [`export_release`] check each window they copy. Readers do not check on every read.
//!
//! Not covered: a reader does not follow a live writer (reopen to see newer windows), and
//! a file system that loses fsynced data is beyond any of this.
//!
//! # Reading
//!
//! [`StoreReader`] reads a finished file, or the completed windows of a store in progress
//! from its parts. [`StoreReader::prefetch`] reads batches ahead on a thread with bounded
//! memory: `(depth + 2) * batch_size * n_vars * d_model * 4` bytes.
//!
//! # Example
//!
//! ```
//! use timekd_store::{Dtype, Fingerprint, StoreReader, StoreWriter, WriterOptions};
//!
//! # fn main() -> Result<(), timekd_store::StoreError> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("ETTh1/24/train.h5");
//! let fingerprint = Fingerprint {
//!     schema_version: timekd_store::SCHEMA_VERSION,
//!     dataset: "ETTh1".into(),
//!     data_sha256: "ab".repeat(32),
//!     columns: vec!["HUFL".into(), "OT".into()],
//!     split: "train".into(),
//!     split_start: 0,
//!     split_end: 8640,
//!     input_len: 96,
//!     output_len: 24,
//!     n_vars: 2,
//!     d_model: 4,
//!     value_format: "plain".into(),
//!     prompt_template: "timekd-v1".into(),
//!     model_id: "gpt2".into(),
//!     weights_sha256: "cd".repeat(32),
//!     layers: 12,
//!     sca_seed: 2024,
//!     compute_precision: "f32".into(),
//!     dtype: Dtype::F32,
//!     tool_version: "0.1.0".into(),
//!     created: String::new(),
//! };
//! let mut writer = StoreWriter::open(&path, fingerprint, 3, WriterOptions::default())?;
//! for window in writer.missing() {
//!     writer.put(window, &[window as f32; 8])?;
//! }
//! writer.finish()?;
//!
//! let reader = StoreReader::open(&path)?;
//! assert_eq!(reader.dims().windows, 3);
//! assert_eq!(reader.read_batch(&[2, 0])?[..2], [2.0, 2.0]);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/synthetic.rs` writes, resumes, reads and inspects a synthetic store.
//! [`StoreLayout`] says where the store of a (dataset, output length, split) lives under a
//! root: the one place that path is built.

#![warn(missing_docs)]

mod durable;
mod error;
mod final_file;
mod fingerprint;
mod inspect;
mod journal;
mod layout;
mod merge;
mod part;
mod prefetch;
mod reader;
mod release;
mod store_layout;
mod verify;
mod writer;

pub use error::{DiskFull, FieldDiff, Result, StoreError};
pub use fingerprint::{Dtype, Fingerprint, SCHEMA_VERSION, sha256_file};
pub use inspect::{Summary, inspect};
pub use layout::{Dims, shard_range};
pub use merge::merge;
pub use prefetch::{Batch, Prefetch};
pub use reader::StoreReader;
pub use release::{export_release, import_release};
pub use store_layout::StoreLayout;
pub use verify::{Verification, verify};
pub use writer::{StoreWriter, WriterOptions};
