//! `timekd extract --dry-run`: what a run would cost, and which output lengths fit the
//! model's positions.

use std::collections::BTreeMap;

use timekd_teacher::ModelShape;
use timekd_teacher::extract::{ExtractionPlan, budget::gib};

use super::ExtractArgs;

/// Prints the dry run's report.
pub(super) fn print_plan(plan: &ExtractionPlan, args: &ExtractArgs, shape: &ModelShape) {
    let positions = shape.max_tokens;
    for store in &plan.stores {
        let survey = &store.survey;
        println!(
            "split {} H = {}: {} windows, {} prompts",
            store.split, store.output_len, store.windows, store.prompts
        );
        println!(
            "  tokens per prompt (mean of a sample): GT {:.0}, HD {:.0}; longest ≈ {}",
            survey.mean_gt, survey.mean_hd, survey.longest
        );
        println!(
            "  tokens in all: {:.3e}; forward FLOPs ≈ {:.3e}",
            store.tokens, store.flops
        );
        let cache = if !shape.causal {
            format!("off: {} attends both ways, prompts run whole", shape.family)
        } else if args.no_prefix_cache {
            "off".to_string()
        } else {
            format!("on, {:.0} shared tokens per pair", survey.mean_prefix)
        };
        println!(
            "  forward FLOPs run ≈ {:.3e} (prefix cache {cache})",
            store.flops_run
        );
        println!("  time estimate on {}: {:.0} s", args.device, store.seconds);
        println!(
            "  fits the model's {positions} positions: {}",
            if survey.longest <= positions {
                "yes"
            } else {
                "NO"
            }
        );
    }
    let options = &plan.passes.options;
    println!(
        "per pass: ≤ {} padded tokens, ≤ {} prompts, est. peak memory {:.2} GiB (budget {:.2} GiB)",
        options.max_tokens,
        options.max_prompts,
        gib(plan.passes.peak_bytes),
        gib(plan.budget.bytes)
    );
    println!(
        "work in chunks of {} windows per worker (progress, resume and the --report-after rate advance by chunks)",
        plan.chunk_windows
    );
    if let Some(engine) = &plan.passes.engine {
        println!(
            "CUDA engine ({}): ≤ {} tokens per pass, {} prefix tokens cached, est. {:.2} GiB of the budget (less where the GPU has less free at load)",
            shape.family,
            engine.pass_tokens,
            engine.cache_tokens,
            gib(engine.peak_bytes)
        );
    }
    if args.data.output_len.len() > 1 {
        let (flops, seconds) = plan.together();
        println!(
            "all lengths in one pass (each window's history prefix runs once for every H): forward FLOPs run ≈ {flops:.3e}, time estimate {seconds:.0} s"
        );
    }
    print_fit(plan, positions);
}

/// Which output lengths' prompts fit `positions` tokens (the longest GT prompt of a sample
/// of windows, with a 16-token margin for longer numbers).
fn print_fit(plan: &ExtractionPlan, positions: usize) {
    let mut fit: BTreeMap<usize, (bool, usize)> = BTreeMap::new();
    for store in &plan.stores {
        let entry = fit.entry(store.output_len).or_insert((true, 0));
        entry.0 &= store.survey.longest <= positions;
        entry.1 = entry.1.max(store.survey.longest);
    }
    let list = |fits: bool| {
        let lengths: Vec<String> = fit
            .iter()
            .filter(|(_, (f, _))| *f == fits)
            .map(|(h, (_, longest))| format!("{h} (≈{longest} tokens)"))
            .collect();
        if lengths.is_empty() {
            "none".to_string()
        } else {
            lengths.join(", ")
        }
    };
    println!(
        "output lengths whose prompts fit {positions} positions: {}",
        list(true)
    );
    println!(
        "output lengths too long for {positions} positions (extraction would stop): {}",
        list(false)
    );
}
