//! [`verify`]: checks a store against the checksums recorded when it was written.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::final_file::{DIGEST_LEN, window_digest};
use crate::fingerprint::hex;
use crate::journal;
use crate::part::PartShape;
use crate::reader::StoreReader;

/// What [`verify`] found in a store that passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// A finished store: every window matches its recorded digest and all of them the
    /// recorded checksum.
    Verified {
        /// Windows checked.
        windows: usize,
        /// Bytes of embedding values read and hashed.
        bytes: u64,
    },
    /// A finished store written before checksums were recorded: nothing to check against.
    NoChecksum,
    /// A store in progress: every part file matched its own checksum.
    PartsVerified {
        /// Part files checked.
        parts: usize,
        /// Windows they hold.
        windows: usize,
    },
}

/// Reads the whole store at `path` and checks it against its checksums: each window of a
/// finished store against its digest (`window_sha256`), then all against
/// `embeddings_sha256`; each part file of a store in progress against its trailer.
///
/// A difference is [`StoreError::ChecksumMismatch`] naming the first bad window (or
/// [`StoreError::Corrupt`] naming the first damaged part file). The cost is one read of the
/// whole file and SHA-256 over it (about a second per GB).
pub fn verify(path: &Path) -> Result<Verification> {
    let reader = StoreReader::open(path)?;
    if !reader.is_finished() {
        return verify_parts(path, &reader);
    }
    let (Some(expected), Some(digests)) = (reader.checksum(), reader.window_digests()?) else {
        return Ok(Verification::NoChecksum);
    };
    let mut values = vec![0f32; reader.dims().window_len()];
    let mut encoded = Vec::new();
    let mut total = Sha256::new();
    let mut bytes = 0u64;
    for window in reader.window_range() {
        reader.read_into(window, &mut values)?;
        check_window(&reader, Some(&digests), window, &values, &mut encoded)?;
        total.update(&encoded);
        bytes += encoded.len() as u64;
    }
    let found = hex(&total.finalize());
    if found != expected {
        return Err(StoreError::corrupt(
            path,
            format!(
                "every window matches its digest, but together they hash to {found}, not the \
                 recorded {expected}: the digest table or the checksum attribute was altered"
            ),
        ));
    }
    Ok(Verification::Verified {
        windows: digests.len(),
        bytes,
    })
}

/// Checks every part file of the store in progress at `path` against its trailer.
fn verify_parts(path: &Path, reader: &StoreReader) -> Result<Verification> {
    let fingerprint = reader.fingerprint();
    let shape = PartShape {
        n_vars: fingerprint.n_vars,
        d_model: fingerprint.d_model,
        dtype: fingerprint.dtype,
    };
    let scan = journal::scan(&journal::parts_dir(path), reader.header(), &shape, true)?;
    if let Some((part, reason)) = scan.damaged.first() {
        return Err(StoreError::corrupt(part, reason.clone()));
    }
    Ok(Verification::PartsVerified {
        parts: scan.parts.len(),
        windows: scan.parts.iter().map(|p| p.windows.len()).sum(),
    })
}

/// Checks window `window` of `reader` (its values `values`) against `digests`, the reader's
/// recorded digests (`None`: nothing to check).
pub(crate) fn check_window(
    reader: &StoreReader,
    digests: Option<&[[u8; DIGEST_LEN]]>,
    window: usize,
    values: &[f32],
    encoded: &mut Vec<u8>,
) -> Result<()> {
    let Some(digests) = digests else {
        return Ok(());
    };
    let local = window - reader.window_range().start;
    if window_digest(reader.fingerprint().dtype, values, encoded) == digests[local] {
        Ok(())
    } else {
        Err(StoreError::ChecksumMismatch {
            path: reader.path().to_path_buf(),
            window,
        })
    }
}
