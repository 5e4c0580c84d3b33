//! The teacher's error type.

use std::path::PathBuf;

use burn::tensor::Tensor;

/// Everything that can go wrong while building prompts, loading the models or running them.
///
/// Messages say what failed, where (file, tensor, window, variable) and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// A model was named that is neither a directory nor found in the Hugging Face cache.
    #[error(
        "model `{spec}` not found; looked in: {}. Finding a model never downloads weights \
         (`timekd extract --model <hub id>` does, where a network exists): pass a directory \
         holding `config.json` and `model.safetensors` (Hugging Face GPT-2 layout), or fetch \
         the model once where a network exists (e.g. `huggingface-cli download {spec}`) and \
         point HF_HOME at that cache",
        display_paths(looked)
    )]
    ModelNotFound {
        /// The directory or model id that was asked for.
        spec: String,
        /// Every place that was searched.
        looked: Vec<PathBuf>,
    },

    /// A model id is not in the cache and `HF_HUB_OFFLINE` forbids downloading it.
    #[error(
        "model `{spec}` is not in the Hugging Face cache (looked in: {}) and HF_HUB_OFFLINE \
         is set, so it is not downloaded. Provide the weights: pass --model DIR, a directory \
         holding `config.json` and `model.safetensors` (Hugging Face GPT-2 layout); or copy a \
         hub cache that holds the model (`huggingface-cli download {spec} config.json \
         model.safetensors` where a network exists) and point HF_HOME at it; or unset \
         HF_HUB_OFFLINE to download it",
        display_paths(looked)
    )]
    Offline {
        /// The model id asked for.
        spec: String,
        /// Every place that was searched.
        looked: Vec<PathBuf>,
    },

    /// Downloading a model from the hub failed.
    #[error(
        "downloading model `{spec}` from {endpoint} failed: {message}. Check the model id and \
         the network (HF_ENDPOINT names another hub); without a network, pass --model DIR \
         with `config.json` and `model.safetensors`, or point HF_HOME at a cache that holds \
         the model"
    )]
    Download {
        /// The model id asked for.
        spec: String,
        /// The hub asked.
        endpoint: String,
        /// What went wrong.
        message: String,
    },

    /// A file of the model directory does not exist.
    #[error("missing {what} `{}`: a GPT-2 model directory needs `config.json` and `model.safetensors`", path.display())]
    MissingFile {
        /// Which file it is (`config.json`, `model.safetensors`, ...).
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },

    /// A file exists but could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// A file could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating-system error (or, for safetensors, the tensor that does not fit).
        source: std::io::Error,
    },

    /// `config.json` is not valid JSON or lacks a GPT-2 field.
    #[error("invalid GPT-2 config `{}`: {reason}", path.display())]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A safetensors file is not valid safetensors.
    #[error("corrupt safetensors file `{}`: {reason}", path.display())]
    BadSafetensors {
        /// The weights file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },

    /// A tensor the model needs is absent from the weights file.
    #[error("tensor `{name}` missing from `{}`", path.display())]
    MissingTensor {
        /// The tensor name, as looked up (with any prefix).
        name: String,
        /// The weights file.
        path: PathBuf,
    },

    /// A tensor has a shape other than the config implies.
    #[error("tensor `{name}` in `{}` has shape {found:?}, expected {expected:?}", path.display())]
    TensorShape {
        /// The tensor name.
        name: String,
        /// The weights file.
        path: PathBuf,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },

    /// A tensor is stored in a dtype this loader does not read.
    #[error("tensor `{name}` in `{}` has dtype {dtype}; supported: F32, F16, BF16, F64", path.display())]
    TensorDtype {
        /// The tensor name.
        name: String,
        /// The weights file.
        path: PathBuf,
        /// The dtype found.
        dtype: String,
    },

    /// More layers were requested than the checkpoint has (or zero).
    #[error(
        "--gpt2-layers {requested} is out of range: the checkpoint has {available} layers (use 1..={available})"
    )]
    Layers {
        /// The requested layer count.
        requested: usize,
        /// The checkpoint's layer count.
        available: usize,
    },

    /// A prompt does not fit the model's position table.
    #[error(
        "{what} has {tokens} tokens, more than the model's {limit} positions: shorten the \
         input length L or the output length H, use the `int` value format, or use a model \
         with more positions"
    )]
    PromptTooLong {
        /// Which prompt (window, variable, GT/HD).
        what: String,
        /// Its token count.
        tokens: usize,
        /// The model's `n_positions`.
        limit: usize,
    },

    /// A prompt encoded to no tokens at all.
    #[error("{what} is empty: no token to take the hidden state of")]
    EmptyPrompt {
        /// Which prompt.
        what: String,
    },

    /// Inputs of inconsistent sizes were passed to the teacher.
    #[error("inconsistent input: {0}")]
    Input(String),

    /// The GPT-2 BPE ranks could not be loaded.
    #[error("cannot load the GPT-2 BPE (r50k_base) ranks: {0}")]
    Tokenizer(String),

    /// A checkpoint's `tokenizer.json` cannot be used for the prompts.
    #[error("tokenizer `{}`: {reason}", path.display())]
    TokenizerFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The CUDA engine failed (driver, cuBLASLt, kernel compilation).
    #[error("CUDA engine: {0}")]
    Cuda(String),

    /// A device allocation failed: extraction retries with smaller passes.
    #[error(
        "out of GPU memory allocating {:.2} GiB ({what}); lower --max-gpu-mem or free the GPU",
        *bytes as f64 / (1u64 << 30) as f64
    )]
    DeviceOutOfMemory {
        /// What was being allocated.
        what: String,
        /// The allocation's size.
        bytes: u64,
    },

    /// A tensor could not be read back from the device.
    #[error("cannot read a tensor back from the device: {0}")]
    Readback(String),
}

/// The values of `tensor` on the host as f32, row-major ([`TeacherError::Readback`] when the
/// device cannot give them).
pub(crate) fn read_back<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, TeacherError> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| TeacherError::Readback(format!("{e:?}")))
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nowhere (no Hugging Face cache location is set)".to_string();
    }
    paths
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}
