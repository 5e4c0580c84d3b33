//! Plain device allocations addressed by raw pointer, and host↔device copies on a stream.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, PinnedHostSlice, result};

use super::CudaError;

/// `bytes` of device memory (cuMemAlloc), freed on drop.
pub(crate) struct DeviceBuffer {
    ptr: u64,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl DeviceBuffer {
    /// Allocates `bytes` (at least 1) on `stream`'s device. Out of memory is
    /// [`CudaError::OutOfMemory`].
    pub fn new(stream: &Arc<CudaStream>, bytes: usize) -> Result<Self, CudaError> {
        let ctx = stream.context().clone();
        ctx.bind_to_thread().map_err(CudaError::driver)?;
        // SAFETY: a plain allocation in the bound context; freed once in Drop.
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }.map_err(|e| {
            if format!("{e:?}").contains("OUT_OF_MEMORY") {
                CudaError::OutOfMemory { bytes }
            } else {
                CudaError::driver(e)
            }
        })?;
        Ok(DeviceBuffer { ptr, bytes, ctx })
    }

    /// The buffer in `slot`, replaced by one of `bytes` when it is missing or smaller (the old
    /// one freed first).
    pub fn grown<'a>(
        slot: &'a mut Option<Self>,
        stream: &Arc<CudaStream>,
        bytes: usize,
    ) -> Result<&'a Self, CudaError> {
        if slot.as_ref().is_none_or(|b| b.bytes < bytes) {
            *slot = None;
            *slot = Some(Self::new(stream, bytes)?);
        }
        Ok(slot.as_ref().expect("allocated above"))
    }

    /// A buffer holding `values`.
    pub fn from_slice<T: Copy>(stream: &Arc<CudaStream>, values: &[T]) -> Result<Self, CudaError> {
        let buffer = Self::new(stream, std::mem::size_of_val(values))?;
        buffer.upload(stream, values)?;
        Ok(buffer)
    }

    /// The device address.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The address `offset` bytes in.
    pub fn at(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.bytes);
        self.ptr + offset as u64
    }

    /// Queues a copy of `values` to the start of the buffer. The host slice may be reused
    /// when this returns (pageable memory is staged before the call returns).
    pub fn upload<T: Copy>(&self, stream: &CudaStream, values: &[T]) -> Result<(), CudaError> {
        let bytes = std::mem::size_of_val(values);
        if bytes > self.bytes {
            return Err(CudaError::Internal(format!(
                "upload of {bytes} bytes into a buffer of {}",
                self.bytes
            )));
        }
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: the destination holds `bytes`; the stream orders it after earlier work.
        unsafe { result::memcpy_htod_async(self.ptr, values, stream.cu_stream()) }
            .map_err(CudaError::driver)
    }

    /// Copies the first `out.len()` values to the host, waiting for the stream first (tests;
    /// the engine's calls read their states through [`PinnedDownload`]).
    #[cfg(test)]
    pub fn download<T: Copy>(&self, stream: &CudaStream, out: &mut [T]) -> Result<(), CudaError> {
        if std::mem::size_of_val(out) > self.bytes {
            return Err(CudaError::Internal(
                "download larger than its buffer".into(),
            ));
        }
        // SAFETY: the source holds the bytes; the copy follows the stream's earlier work and
        // the stream is synchronised before the host reads `out`.
        unsafe { result::memcpy_dtoh_async(out, self.ptr, stream.cu_stream()) }
            .map_err(CudaError::driver)?;
        stream.synchronize().map_err(CudaError::driver)
    }
}

/// Page-locked host memory that device-to-host copies land in, grown on demand. A copy into
/// pageable memory returns only when it is done, so the host could not queue the next call's
/// work behind it; a copy into this one is queued like a kernel.
#[derive(Default)]
pub(crate) struct PinnedDownload {
    slice: Option<PinnedHostSlice<f32>>,
}

impl PinnedDownload {
    /// Queues a copy of the first `len` values of `source` into this buffer (grown first if
    /// smaller: after the stream's earlier work, which may still be copying into the old one).
    /// Read them with [`values`](Self::values) once the stream has passed the copy.
    pub fn queue(
        &mut self,
        stream: &Arc<CudaStream>,
        source: &DeviceBuffer,
        len: usize,
    ) -> Result<(), CudaError> {
        if len * 4 > source.bytes {
            return Err(CudaError::Internal(
                "download larger than its buffer".into(),
            ));
        }
        if len == 0 {
            return Ok(());
        }
        if self.slice.as_ref().is_none_or(|s| s.len() < len) {
            stream.synchronize().map_err(CudaError::driver)?;
            self.slice = None;
            // SAFETY: the values are written by the copies before they are read. Plain
            // page-locked memory (flags 0): write-combined memory is slow for the host to read.
            let slice = unsafe { stream.context().alloc_pinned_with_flags::<f32>(len, 0) }
                .map_err(CudaError::driver)?;
            self.slice = Some(slice);
        }
        let slice = self.slice.as_mut().expect("allocated above");
        let dst = &mut slice.as_mut_slice().map_err(CudaError::driver)?[..len];
        // SAFETY: the source holds `len` values; the copy follows the stream's earlier work,
        // and the host reads `dst` only after waiting for it.
        unsafe { result::memcpy_dtoh_async(dst, source.ptr, stream.cu_stream()) }
            .map_err(CudaError::driver)
    }

    /// The first `len` values, once the copy that wrote them is done.
    pub fn values(&self, len: usize) -> Result<&[f32], CudaError> {
        match &self.slice {
            Some(slice) => Ok(&slice.as_slice().map_err(CudaError::driver)?[..len]),
            None => Ok(&[]),
        }
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once; the context is bound first because a
        // buffer may be dropped on another thread than the one that made it.
        if self.ctx.bind_to_thread().is_ok() {
            let _ = self.ctx.synchronize();
            unsafe {
                let _ = result::free_sync(self.ptr);
            }
        }
    }
}
