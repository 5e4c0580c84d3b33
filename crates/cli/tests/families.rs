//! The paper's teacher ablation end to end on the CPU: a LLaMA and a BERT checkpoint (the
//! teacher crate's transformers fixtures: small random models of each family's real
//! architecture, with their `tokenizer.json`) through `timekd extract` (train, val and test
//! stores of ETTh1, few windows) and `timekd train` (a student distilled from those stores,
//! evaluated on the test split).

mod common;

use common::{ok, refused, repo, timekd};
use timekd_store::StoreReader;

const WINDOWS: &str = "16";

#[test]
fn llama_and_bert_teachers_extract_and_train_a_student() {
    for family in ["llama", "bert"] {
        let dir = tempfile::tempdir().unwrap();
        let model = repo()
            .join("crates/teacher/tests/fixtures/families")
            .join(family);
        let model = model.to_str().unwrap();
        let stores = dir.path().join("embeddings");
        let run_dir = dir.path().join("student");
        // The dry run plans with the family's shape: BERT runs its prompts whole.
        let out = ok(
            timekd(
                dir.path(),
                &[
                    "extract",
                    "--output-len",
                    "24",
                    "--model",
                    model,
                    "--dry-run",
                ],
            ),
            "timekd extract --dry-run",
        );
        let plan = String::from_utf8_lossy(&out.stdout);
        assert!(plan.contains("work in chunks of "), "{family}: {plan}");
        let whole = plan.contains("prefix cache off: bert attends both ways");
        assert_eq!(whole, family == "bert", "{family}: {plan}");
        let out = ok(
            timekd(
                dir.path(),
                &[
                    "extract",
                    "--output-len",
                    "24",
                    "--model",
                    model,
                    "--split",
                    "all",
                    "--max-windows",
                    WINDOWS,
                    "--out",
                    stores.to_str().unwrap(),
                ],
            ),
            "timekd extract",
        );
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains(&format!("({family}, 2 of 2 layers, width 64)")),
            "{family}: the log names the family: {log}"
        );
        // The embeddings carry the window: a teacher whose embedding token saw only the
        // prompt's words (the same for every window) would store one embedding for all.
        let reader = StoreReader::open(&stores.join("ETTh1/24/train.h5")).unwrap();
        let first_two = reader.read_batch(&[0, 1]).unwrap();
        let (a, b) = first_two.split_at(first_two.len() / 2);
        let moved = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            moved > 1e-3,
            "{family}: windows 0 and 1 embed alike ({moved})"
        );
        ok(
            timekd(
                dir.path(),
                &[
                    "train",
                    "--output-len",
                    "24",
                    "--epochs",
                    "2",
                    "--max-windows",
                    WINDOWS,
                    "--stores",
                    stores.to_str().unwrap(),
                    "--run-dir",
                    run_dir.to_str().unwrap(),
                ],
            ),
            "timekd train",
        );
        let test: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("test.json")).unwrap()).unwrap();
        let mse = test["mse"].as_f64().unwrap();
        assert!(mse.is_finite() && mse > 0.0, "{family}: test {test}");

        // `--engine cuda` is refused by name before any store is made: here for the CPU
        // build's missing CUDA support (a CUDA build refuses it for BERT, which the engine
        // does not run, and runs LLaMA).
        let err = refused(
            timekd(
                dir.path(),
                &[
                    "extract",
                    "--output-len",
                    "24",
                    "--model",
                    model,
                    "--engine",
                    "cuda",
                    "--max-windows",
                    "2",
                    "--out",
                    stores.to_str().unwrap(),
                ],
            ),
            "--engine cuda",
        );
        assert!(err.contains("--engine cuda"), "{err}");
        assert!(
            !dir.path().join("refused").exists(),
            "refused before any store is made"
        );
    }
}
