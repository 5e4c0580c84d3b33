//! The stores `timekd train` reads: opened through the one store layout, and verified
//! against their checksums once per invocation unless `--no-verify` (a seed sweep reads
//! each store once per seed, but checks it once).

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use timekd_data::{DataSource, Split};
use timekd_store::{StoreLayout, Verification};
use timekd_student::{StoreEmbeddings, StudentError};

use super::TrainArgs;

/// The train and val stores of `train` and `val`; `None` (after saying so) when one is
/// missing and a sweep (several lengths or seeds) is running: that run is skipped.
pub fn open(
    args: &TrainArgs,
    source: &DataSource,
    train: &Split<'_>,
    val: &Split<'_>,
    sweep: bool,
    verified: &RefCell<HashSet<PathBuf>>,
) -> anyhow::Result<Option<(StoreEmbeddings, StoreEmbeddings)>> {
    let layout = StoreLayout::new(&args.stores);
    let stores = StoreEmbeddings::open(&layout, source, train)
        .and_then(|train| Ok((train, StoreEmbeddings::open(&layout, source, val)?)));
    let stores = match stores {
        Err(err @ StudentError::MissingStore { .. }) if sweep => {
            eprintln!("H = {}: skipped: {err}", train.dataset().output_len());
            return Ok(None);
        }
        stores => stores?,
    };
    for store in [&stores.0, &stores.1] {
        // A failed check ends the invocation, so a path is recorded before its check.
        if verified.borrow_mut().insert(store.path()) {
            verify(store, args.no_verify)?;
        }
    }
    Ok(Some(stores))
}

/// Checks `store` against its checksums (one read of the whole file), or says it is not
/// checked.
fn verify(store: &StoreEmbeddings, skip: bool) -> anyhow::Result<()> {
    let path = store.path();
    if skip {
        eprintln!("{}: not verified (--no-verify)", path.display());
        return Ok(());
    }
    let started = Instant::now();
    match store.verify()? {
        Verification::Verified { windows, bytes } => eprintln!(
            "{}: checksum verified ({windows} windows, {:.1} MB in {:.1} s)",
            path.display(),
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        ),
        Verification::NoChecksum => eprintln!(
            "{}: no checksum recorded (finished by an older timekd): not verified",
            path.display()
        ),
        Verification::PartsVerified { .. } => {}
    }
    Ok(())
}
