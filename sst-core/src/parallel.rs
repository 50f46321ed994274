//! Splitting CPU-bound work over threads (`std::thread::scope`), with results in input order
//! whatever the number of threads, so that parallel checks stay deterministic.

/// Runs `f` on contiguous chunks of `items`, one chunk per thread (at most `workers` threads,
/// 0 counting as 1, and no chunk smaller than `min_chunk` unless it is the only one), and
/// concatenates the chunks' results in input order. `f` must return one result per item of
/// its chunk.
pub(crate) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    min_chunk: usize,
    f: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    let workers = workers
        .max(1)
        .min(items.len().div_ceil(min_chunk.max(1)).max(1));
    if workers == 1 {
        return f(items);
    }
    let chunk = items.len().div_ceil(workers);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || f(part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(results) => results,
                // Never report anything for a chunk whose worker panicked: re-raise it.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// [`map_chunks`] with `f` applied to each item.
pub(crate) fn map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    min_chunk: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    map_chunks(items, workers, min_chunk, |part| {
        part.iter().map(&f).collect()
    })
}

/// The number of threads the machine offers (1 if unknown).
pub(crate) fn available_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_input_order_for_any_number_of_workers() {
        let items: Vec<u32> = (0..1000).collect();
        let expected: Vec<u64> = items.iter().map(|i| u64::from(*i) * 3).collect();
        for workers in [0, 1, 2, 3, 7, 64] {
            for min_chunk in [0, 1, 10, 5000] {
                let got = map(&items, workers, min_chunk, |i| u64::from(*i) * 3);
                assert_eq!(got, expected, "{workers} workers, chunks of {min_chunk}+");
            }
        }
        assert!(map(&[] as &[u32], 4, 1, |i| *i).is_empty());
    }
}
