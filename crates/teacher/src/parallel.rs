//! [`map_in_threads`]: CPU work split over scoped threads, results in input order (prompt
//! encoding, the CUDA engine's weight conversion).

use crate::error::TeacherError;

/// `f` of every item, in order, the items split into contiguous runs over at most `threads`
/// threads; the first error (in item order) is returned.
pub(crate) fn map_in_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, TeacherError> + Sync,
) -> Result<Vec<R>, TeacherError> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Result<Vec<R>, TeacherError>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per_thread)
            .map(|part| s.spawn(move || part.iter().map(f).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::map_in_threads;
    use crate::error::TeacherError;

    #[test]
    fn results_keep_the_items_order_and_the_first_error_wins() {
        let items: Vec<usize> = (0..23).collect();
        for threads in [1, 2, 4, 64] {
            let doubled = map_in_threads(&items, threads, |&i| Ok(2 * i)).unwrap();
            assert_eq!(doubled, items.iter().map(|i| 2 * i).collect::<Vec<_>>());
            let err = map_in_threads(&items, threads, |&i| {
                if i % 7 == 6 {
                    Err(TeacherError::Input(format!("item {i}")))
                } else {
                    Ok(i)
                }
            })
            .unwrap_err();
            assert!(err.to_string().contains("item 6"), "{err}");
        }
    }
}
