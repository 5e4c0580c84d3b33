//! How the engine cuts a list of prompt families into passes.
//!
//! Families are taken in order into groups whose prefixes fit the KV cache together; a
//! group's prefixes run in passes of at most `pass_tokens` packed tokens (their keys and
//! values stay in the cache), then every suffix of the group's families runs in passes of at
//! most `pass_tokens` tokens and `pass_sequences` sequences against that cache. Each sequence
//! is whole inside one pass; one longer than the budget gets a pass of its own.

use std::ops::Range;

use super::limits::EngineLimits;

/// One group of families sharing the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// The families, as a range of the caller's indices.
    pub families: Range<usize>,
    /// The cache row where each family's prefix starts (its keys and values), in order.
    pub cache_rows: Vec<usize>,
    /// Prefix passes: ranges of the caller's family indices.
    pub prefix_passes: Vec<Range<usize>>,
    /// Suffix passes: (family, prompt) of each sequence, in order.
    pub suffix_passes: Vec<Vec<(usize, usize)>>,
}

/// The plan for families of `prefixes[f]` shared tokens (0: none) and `suffixes[f][k]`
/// tokens of their prompts after it.
pub(crate) fn plan(
    prefixes: &[usize],
    suffixes: &[Vec<usize>],
    budgets: EngineLimits,
) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < prefixes.len() {
        let mut end = start;
        let mut cached = 0;
        while end < prefixes.len()
            && (end == start || cached + prefixes[end] <= budgets.cache_tokens)
        {
            cached += prefixes[end];
            end += 1;
        }
        groups.push(group(start..end, prefixes, suffixes, budgets));
        start = end;
    }
    groups
}

fn group(
    families: Range<usize>,
    prefixes: &[usize],
    suffixes: &[Vec<usize>],
    b: EngineLimits,
) -> Group {
    let mut cache_rows = Vec::with_capacity(families.len());
    let mut row = 0;
    for f in families.clone() {
        cache_rows.push(row);
        row += prefixes[f];
    }
    // Prefix passes over the families that share a prefix.
    let mut prefix_passes: Vec<Range<usize>> = Vec::new();
    let mut tokens = 0;
    for f in families.clone().filter(|&f| prefixes[f] > 0) {
        match prefix_passes.last_mut() {
            Some(pass)
                if pass.end == f
                    && tokens + prefixes[f] <= b.pass_tokens
                    && pass.len() < b.pass_sequences =>
            {
                pass.end = f + 1;
                tokens += prefixes[f];
            }
            _ => {
                prefix_passes.push(f..f + 1);
                tokens = prefixes[f];
            }
        }
    }
    let mut suffix_passes: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut tokens = 0;
    for f in families.clone() {
        for (k, &n) in suffixes[f].iter().enumerate() {
            match suffix_passes.last_mut() {
                Some(pass) if tokens + n <= b.pass_tokens && pass.len() < b.pass_sequences => {
                    pass.push((f, k));
                    tokens += n;
                }
                _ => {
                    suffix_passes.push(vec![(f, k)]);
                    tokens = n;
                }
            }
        }
    }
    Group {
        families,
        cache_rows,
        prefix_passes,
        suffix_passes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(pass_tokens: usize, pass_sequences: usize, cache_tokens: usize) -> EngineLimits {
        EngineLimits {
            pass_tokens,
            pass_sequences,
            cache_tokens,
        }
    }

    #[test]
    fn every_sequence_runs_once_within_its_budgets() {
        let prefixes = [240, 0, 231, 250, 7];
        let suffixes = vec![
            vec![50, 10, 70, 11],
            vec![300, 260],
            vec![49, 12],
            vec![400, 12, 90],
            vec![1],
        ];
        let b = budgets(512, 3, 500);
        let groups = plan(&prefixes, &suffixes, b);
        let mut seen_prefix = Vec::new();
        let mut seen_suffix = Vec::new();
        let mut next = 0;
        for g in &groups {
            assert_eq!(g.families.start, next, "groups cover the families in order");
            next = g.families.end;
            let cached: usize = g.families.clone().map(|f| prefixes[f]).sum();
            assert!(cached <= b.cache_tokens || g.families.len() == 1, "{g:?}");
            for (i, f) in g.families.clone().enumerate() {
                let before: usize = (g.families.start..f).map(|f| prefixes[f]).sum();
                assert_eq!(g.cache_rows[i], before);
            }
            for pass in &g.prefix_passes {
                let tokens: usize = pass.clone().map(|f| prefixes[f]).sum();
                assert!(tokens <= b.pass_tokens || pass.len() == 1);
                assert!(pass.len() <= b.pass_sequences);
                seen_prefix.extend(pass.clone());
            }
            for pass in &g.suffix_passes {
                let tokens: usize = pass.iter().map(|&(f, k)| suffixes[f][k]).sum();
                assert!(tokens <= b.pass_tokens || pass.len() == 1, "{pass:?}");
                assert!(pass.len() <= b.pass_sequences);
                assert!(pass.iter().all(|(f, _)| g.families.contains(f)));
                seen_suffix.extend(pass.iter().copied());
            }
        }
        assert_eq!(next, prefixes.len());
        assert_eq!(
            seen_prefix,
            vec![0, 2, 3, 4],
            "families without a prefix run none"
        );
        let all: Vec<(usize, usize)> = suffixes
            .iter()
            .enumerate()
            .flat_map(|(f, s)| (0..s.len()).map(move |k| (f, k)))
            .collect();
        assert_eq!(seen_suffix, all);
    }

    #[test]
    fn a_family_larger_than_the_cache_still_runs_alone() {
        let groups = plan(&[600, 600], &[vec![5], vec![5]], budgets(100, 8, 500));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].prefix_passes, vec![0..1]);
        assert_eq!(groups[1].families, 1..2);
    }
}
