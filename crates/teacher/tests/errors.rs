//! Every loading and input error, with the message a user sees.

mod common;

use std::path::Path;

use common::*;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use timekd_teacher::gpt2::resolve::resolve_model_dir_in;
use timekd_teacher::{
    BatchOptions, Gpt2, PromptBuilder, PromptTemplate, Sca, Teacher, TeacherError, ValueFormat,
};

/// A copy of the fixture's tiny model in a temporary directory.
fn copy_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(model_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Rewrites `dir/model.safetensors` through `edit(name, shape, bytes)`, which returns the
/// replacement (or `None` to drop the tensor).
fn rewrite_weights(
    dir: &Path,
    edit: impl Fn(&str, &[usize], &[u8]) -> Option<(Vec<usize>, Vec<u8>)>,
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(name, v)| {
            edit(&name, v.shape(), v.data()).map(|(shape, data)| (name, shape, data))
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = kept
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn load_err(dir: &Path, layers: Option<usize>) -> TeacherError {
    Gpt2::load_dir(dir, layers, &device()).unwrap_err()
}

#[test]
fn unknown_model_id_says_where_it_looked_and_how_to_provide_weights() {
    let cache = tempfile::tempdir().unwrap();
    let err =
        resolve_model_dir_in("openai-community/gpt2", &[cache.path().to_path_buf()]).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, TeacherError::ModelNotFound { .. }));
    assert!(msg.contains("models--openai-community--gpt2"), "{msg}");
    assert!(
        msg.contains("config.json") && msg.contains("HF_HOME"),
        "{msg}"
    );
    // Through the public loader too, with the environment's cache roots.
    let err = Gpt2::load("no/such-model-anywhere", None, &device()).unwrap_err();
    assert!(matches!(err, TeacherError::ModelNotFound { .. }), "{err}");
}

#[test]
fn missing_config_json() {
    let dir = copy_model();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path(), None);
    assert!(
        matches!(
            err,
            TeacherError::MissingFile {
                what: "config.json",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_config_json() {
    let dir = copy_model();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let err = load_err(dir.path(), None);
    assert!(matches!(err, TeacherError::BadConfig { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn missing_model_safetensors() {
    let dir = copy_model();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_err(dir.path(), None);
    assert!(
        matches!(
            err,
            TeacherError::MissingFile {
                what: "model.safetensors",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_model_safetensors() {
    let dir = copy_model();
    std::fs::write(dir.path().join("model.safetensors"), b"\x10\x00garbage").unwrap();
    let err = load_err(dir.path(), None);
    assert!(matches!(err, TeacherError::BadSafetensors { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_model();
    rewrite_weights(dir.path(), |name, shape, data| {
        (name != "h.1.mlp.c_fc.bias").then(|| (shape.to_vec(), data.to_vec()))
    });
    let err = load_err(dir.path(), None);
    assert!(matches!(err, TeacherError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains("`h.1.mlp.c_fc.bias`"), "{err}");
    // Loading only the first layer does not need it.
    Gpt2::load_dir(dir.path(), Some(1), &device()).unwrap();
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let dir = copy_model();
    rewrite_weights(dir.path(), |name, shape, data| {
        if name == "h.0.attn.c_attn.weight" {
            // Store it transposed: [3d, d] instead of [d, 3d].
            Some((vec![shape[1], shape[0]], data.to_vec()))
        } else {
            Some((shape.to_vec(), data.to_vec()))
        }
    });
    let err = load_err(dir.path(), None);
    let msg = err.to_string();
    assert!(matches!(err, TeacherError::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("h.0.attn.c_attn.weight") && msg.contains("expected"),
        "{msg}"
    );
}

#[test]
fn transformer_prefix_and_causal_buffers_are_handled() {
    let dir = copy_model();
    rewrite_weights(dir.path(), |_, shape, data| {
        Some((shape.to_vec(), data.to_vec()))
    });
    // Add the prefix to every key and an `attn.bias` buffer, as in GPT2LMHeadModel files.
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let buffer = vec![0u8; 4 * 4];
    let mut views: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (format!("transformer.{n}"), v))
        .collect();
    views.push((
        "transformer.h.0.attn.bias".to_string(),
        TensorView::new(safetensors::Dtype::F32, vec![1, 1, 2, 2], &buffer).unwrap(),
    ));
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, out).unwrap();
    let prefixed = Gpt2::load_dir(dir.path(), None, &device()).unwrap();
    let plain = Gpt2::load_dir(&model_dir(), None, &device()).unwrap();
    let tok = timekd_teacher::Gpt2Tokenizer::new().unwrap();
    let (gt, _) = timekd_teacher::PromptTokenizer::encode_pair(
        &tok,
        &timekd_teacher::PromptPair {
            gt: "From <1> to <2>".into(),
            hd: String::new(),
        },
    )
    .unwrap();
    let a = host(prefixed.hidden_states(&gt, true).unwrap());
    let b = host(plain.hidden_states(&gt, true).unwrap());
    assert_eq!(a, b);
}

#[test]
fn layers_above_the_checkpoint() {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir().join("config.json")).unwrap())
            .unwrap();
    let n_layer = config["n_layer"].as_u64().unwrap() as usize;
    let err = load_err(&model_dir(), Some(n_layer + 1));
    assert!(matches!(err, TeacherError::Layers { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("has {n_layer} layers")), "{msg}");
    assert!(matches!(
        load_err(&model_dir(), Some(0)),
        TeacherError::Layers { .. }
    ));
}

#[test]
fn prompt_longer_than_positions_names_window_and_variable() {
    // A model with few positions: shrink n_positions and wpe.
    let meta = meta();
    let windows = windows(&meta);
    let dir = copy_model();
    let limit = 64;
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    config["n_positions"] = limit.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    rewrite_weights(dir.path(), |name, shape, data| {
        if name == "wpe.weight" {
            let row = data.len() / shape[0];
            Some((vec![limit, shape[1]], data[..limit * row].to_vec()))
        } else {
            Some((shape.to_vec(), data.to_vec()))
        }
    });
    let gpt2 = Gpt2::load_dir(dir.path(), None, &device()).unwrap();
    let sca = Sca::init(meta.n_vars, 4 * gpt2.d_model(), 1, &device());
    let teacher = Teacher::new(
        gpt2,
        sca,
        PromptBuilder::new(PromptTemplate::ett_hourly(), ValueFormat::Int),
        BatchOptions::default(),
    )
    .unwrap();
    let inputs = windows.inputs();
    let err = teacher.embed(&inputs[1..]).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(err, TeacherError::PromptTooLong { limit: 64, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "GT prompt of window {}, variable 0",
            meta.windows[1]
        )),
        "{msg}"
    );
    assert!(msg.contains("64 positions"), "{msg}");
}

#[test]
fn sca_with_wrong_variable_count_is_an_input_error() {
    let meta = meta();
    let windows = windows(&meta);
    let gpt2 = Gpt2::load_dir(&model_dir(), None, &device()).unwrap();
    let sca = Sca::init(meta.n_vars + 1, 4 * gpt2.d_model(), 1, &device());
    let teacher = Teacher::new(
        gpt2,
        sca,
        PromptBuilder::new(PromptTemplate::ett_hourly(), ValueFormat::Int),
        BatchOptions::default(),
    )
    .unwrap();
    let err = teacher.embed(&windows.inputs()).unwrap_err();
    assert!(matches!(err, TeacherError::Input(_)), "{err}");
}
