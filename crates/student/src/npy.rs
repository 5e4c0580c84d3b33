//! NumPy `.npy` files (format version 1.0) of little-endian f32, written atomically.

use std::path::Path;

use crate::error::{Result, StudentError};

/// The bytes of a `.npy` file holding `values` (C order) with `shape`.
pub(crate) fn npy_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    // A one-element tuple needs its trailing comma: (5,).
    let tuple = match dims.as_slice() {
        [one] => format!("({one},)"),
        dims => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}").into_bytes();
    // Magic (6) + version (2) + header length (2) + header + '\n', padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.resize(
        header.len() + unpadded.next_multiple_of(64) - unpadded,
        b' ',
    );
    header.push(b'\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// Writes `values` with `shape` to `path` as a `.npy` file, atomically.
pub(crate) fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    if shape.iter().product::<usize>() != values.len() {
        return Err(StudentError::Config(format!(
            "{}: shape {shape:?} does not hold {} values",
            path.display(),
            values.len()
        )));
    }
    crate::output::write_file(path, &npy_bytes(shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_describes_the_array() {
        let bytes = npy_bytes(&[2, 3, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3, 1)"), "{header}");
        assert!(header.ends_with('\n'));
        assert_eq!(
            &bytes[10 + header_len..14 + header_len],
            1.0f32.to_le_bytes()
        );
        assert_eq!(bytes.len(), 10 + header_len + 24);
        let one = npy_bytes(&[5], &[0.0; 5]);
        assert!(std::str::from_utf8(&one[10..74]).unwrap().contains("(5,)"));
        let dir = tempfile::tempdir().unwrap();
        let err = write_npy(&dir.path().join("x.npy"), &[2, 2], &[1.0]).unwrap_err();
        assert!(err.to_string().contains("[2, 2]"), "{err}");
    }
}
