//! Files written atomically (temporary sibling, fsync, rename, directory fsync: a path holds
//! its old content or the complete new one; a failed write, e.g. on a full disk, removes its
//! temporary file), and the workspace's one safetensors writer.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Writes `bytes` to `path` atomically and durably. On failure the path keeps its old
/// content and no temporary file is left.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// One f32 tensor for [`write_safetensors`]: name, shape (outermost first), row-major values.
pub type TensorRef<'a> = (&'a str, &'a [usize], &'a [f32]);

/// Writes f32 tensors as a safetensors file, [atomically](write_atomic). A shape that does
/// not match its values is an `InvalidInput` error naming the tensor.
pub fn write_safetensors(path: &Path, tensors: &[TensorRef<'_>]) -> std::io::Result<()> {
    write_atomic(path, &safetensors_bytes(tensors)?)
}

/// The bytes of a safetensors file of f32 tensors (what [`write_safetensors`] writes).
pub fn safetensors_bytes(tensors: &[TensorRef<'_>]) -> std::io::Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), raw)| {
            TensorView::new(Dtype::F32, shape.to_vec(), raw)
                .map(|view| (name.to_string(), view))
                .map_err(|e| invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| invalid(e.to_string()))
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        write_safetensors(
            &path,
            &[("a", &[2, 2], &[1.0, 2.0, 3.0, 4.0]), ("b", &[], &[5.0])],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let a = file.tensor("a").unwrap();
        assert_eq!(a.shape(), [2, 2]);
        assert_eq!(&a.data()[4..8], 2.0f32.to_le_bytes());
        assert_eq!(file.tensor("b").unwrap().shape(), [0usize; 0]);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");

        let err = write_safetensors(&path, &[("bad", &[3], &[1.0])]).unwrap_err();
        assert!(err.to_string().contains("tensor `bad`"), "{err}");
        // The failed write left the previous file in place.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
