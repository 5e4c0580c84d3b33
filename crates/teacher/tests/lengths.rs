//! Several output lengths in one pass: each (window, variable)'s history sentence runs once
//! for every H, and the result equals one H at a time with every prompt run whole, to float
//! rounding; it does not depend on how the prompts are batched.

mod common;

use common::{builder, dataset, device, host, model_dir, prompts_at_lengths, rel_l2};
use timekd_data::{Dataset, SplitKind};
use timekd_teacher::{
    BatchOptions, EncodedPrompt, Gpt2, Gpt2Tokenizer, LengthsInput, PromptFamily, PromptPair,
    PromptTokenizer, Sca, Teacher, WindowInput,
};

const LENGTHS: [usize; 5] = [24, 36, 48, 96, 192];

fn make_teacher(data: &Dataset, batch: BatchOptions) -> Teacher {
    let device = device();
    let gpt2 = Gpt2::load_dir(&model_dir(), None, &device).unwrap();
    let sca = Sca::init(data.n_vars(), 4 * gpt2.d_model(), 7, &device);
    Teacher::new(gpt2, sca, builder(data), batch).unwrap()
}

/// Windows 0..6 of the train split, futures long enough for every H; window 2 asks only for
/// two of the lengths, window 4 for one.
fn requests(data: &Dataset) -> Vec<LengthsInput<'_>> {
    let train = data.split(SplitKind::Train);
    (0..6)
        .map(|i| LengthsInput {
            window: WindowInput::from_window(&train.window(i), data.n_vars()),
            lengths: match i {
                2 => vec![36, 192],
                4 => vec![48],
                _ => LENGTHS.to_vec(),
            },
        })
        .collect()
}

#[test]
fn all_lengths_at_once_equal_one_length_at_a_time() {
    let longest = dataset(192);
    let teacher = make_teacher(&longest, BatchOptions::default());
    let requests = requests(&longest);
    let together = teacher.embed_lengths(&requests).unwrap();
    assert_eq!(
        together.iter().map(|e| e.output_len).collect::<Vec<_>>(),
        LENGTHS
    );
    for entry in together {
        let h = entry.output_len;
        let asked: Vec<&LengthsInput> =
            requests.iter().filter(|r| r.lengths.contains(&h)).collect();
        assert_eq!(
            entry.windows,
            asked.iter().map(|r| r.window.index).collect::<Vec<_>>()
        );
        // The same windows on their own, from a dataset loaded for this H, every prompt run
        // whole (no prefix shared at all).
        let data = dataset(h);
        let whole = make_teacher(
            &data,
            BatchOptions {
                share_prefix: false,
                ..BatchOptions::default()
            },
        );
        let train = data.split(SplitKind::Train);
        let inputs: Vec<WindowInput> = entry
            .windows
            .iter()
            .map(|&i| WindowInput::from_window(&train.window(i), data.n_vars()))
            .collect();
        let alone = host(whole.embed(&inputs).unwrap());
        let got = host(entry.embeddings);
        let per_window = got.len() / inputs.len();
        for (w, (a, b)) in got
            .chunks(per_window)
            .zip(alone.chunks(per_window))
            .enumerate()
        {
            let err = rel_l2(a, b);
            assert!(err <= 1e-5, "H = {h}, window {w}: {err}");
        }
    }
}

#[test]
fn all_lengths_do_not_depend_on_batch_sizes() {
    let data = dataset(192);
    let requests = requests(&data);
    let run = |max_tokens: usize| {
        let batch = BatchOptions {
            max_tokens,
            max_prompts: max_tokens / 32,
            ..BatchOptions::default()
        };
        make_teacher(&data, batch)
            .embed_lengths(&requests)
            .unwrap()
            .into_iter()
            .map(|e| host(e.embeddings))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(64 * 384), run(1024), "bit for bit");
}

/// The SCA on fewer windows at once (what it falls back to when a device runs out of memory)
/// gives the same embeddings.
#[test]
fn the_sca_does_not_depend_on_how_many_windows_it_runs_at_once() {
    let data = dataset(192);
    let requests = requests(&data);
    let teacher = make_teacher(&data, BatchOptions::default());
    let encoded = teacher.encoder().encode_lengths(&requests).unwrap();
    let states = teacher.language_states(&encoded).unwrap();
    let all_at_once = teacher.sca_stage().embeddings(states.clone());
    let mut one_stage = teacher.sca_stage().clone();
    one_stage.set_windows_at_once(1);
    assert_eq!(one_stage.windows_at_once(), 1);
    let one_at_a_time = one_stage.embeddings(states);
    assert_eq!(all_at_once.len(), LENGTHS.len());
    for (a, b) in all_at_once.into_iter().zip(one_at_a_time) {
        assert_eq!((a.output_len, &a.windows), (b.output_len, &b.windows));
        assert!(
            a.windows.len() > 1,
            "H = {}: one window proves nothing",
            a.output_len
        );
        let error = rel_l2(&host(a.embeddings), &host(b.embeddings));
        assert!(
            error <= 1e-6,
            "H = {}: relative L2 {error:.2e}",
            a.output_len
        );
    }
}

/// The language model's own states, before the SCA (whose LayerNorm over variables hides
/// much of the HD states): a family of every H's GT and HD prompts with its history sentence
/// run once equals each prompt run whole, and its tokens equal whole-prompt tokenisation.
#[test]
fn a_family_of_all_lengths_equals_its_prompts_run_whole() {
    let data = dataset(192);
    let builder = builder(&data);
    let tokenizer = Gpt2Tokenizer::new().unwrap();
    let gpt2 = Gpt2::load_dir(&model_dir(), None, &device()).unwrap();
    let train = data.split(SplitKind::Train);
    for (i, v) in [(0, 0), (3, 6), (5, 2)] {
        let window = train.window(i);
        let (history, future) = (window.history_raw(v), window.future_raw(v));
        let pairs = prompts_at_lengths(&builder, &tokenizer, &window, v, &LENGTHS);
        for (&h, pair) in LENGTHS.iter().zip(&pairs) {
            let text: PromptPair = builder.build(
                history,
                &future[..h],
                window.history_start(),
                window.history_end(),
            );
            assert_eq!(
                pair,
                &tokenizer.encode_pair(&text).unwrap(),
                "window {i}, variable {v}, H = {h}"
            );
        }
        let prompts: Vec<&EncodedPrompt> = pairs.iter().flat_map(|(gt, hd)| [gt, hd]).collect();
        let family = PromptFamily::new(prompts.clone(), true);
        assert!(family.prefix_len() > 200, "the history sentence is shared");
        let options = BatchOptions::default();
        let shared = host(gpt2.family_last_token_states(&[family], &options).unwrap());
        let whole = host(gpt2.last_token_states(&prompts, &options).unwrap());
        let d = gpt2.d_model();
        for (k, (a, b)) in shared.chunks(d).zip(whole.chunks(d)).enumerate() {
            let err = rel_l2(a, b);
            assert!(err <= 1e-5, "window {i}, variable {v}, prompt {k}: {err}");
        }
    }
}
