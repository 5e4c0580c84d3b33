//! Device vectors the engine owns, addressed by raw pointer for kernels and cuBLAS.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits, result};

use super::GpuError;

/// `len` values of `T` on the engine's device, zero-initialised.
pub(super) struct DeviceVec<T: DeviceRepr> {
    /// Owns the allocation (freed on drop).
    _slice: CudaSlice<T>,
    ptr: u64,
    len: usize,
}

impl<T: DeviceRepr + ValidAsZeroBits + Copy> DeviceVec<T> {
    /// Allocates `len` zeros (at least one element). A failed allocation is
    /// [`GpuError::OutOfMemory`] with the bytes asked for.
    pub fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<Self, GpuError> {
        let bytes = len.max(1) * std::mem::size_of::<T>();
        let slice = stream.alloc_zeros::<T>(len.max(1)).map_err(|e| {
            if format!("{e:?}").contains("OUT_OF_MEMORY") {
                GpuError::OutOfMemory { bytes }
            } else {
                GpuError::driver(e)
            }
        })?;
        // Event tracking is off for the engine's context, so this records nothing.
        let ptr = slice.device_ptr(stream).0;
        Ok(DeviceVec {
            _slice: slice,
            ptr,
            len,
        })
    }

    /// The address of element `index`.
    pub fn at(&self, index: usize) -> u64 {
        debug_assert!(index <= self.len);
        self.ptr + (index * std::mem::size_of::<T>()) as u64
    }

    /// The address of the first element.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues a copy of `values` to elements `offset..`.
    pub fn upload(&self, stream: &CudaStream, offset: usize, values: &[T]) -> Result<(), GpuError> {
        if offset + values.len() > self.len {
            return Err(GpuError::Internal(format!(
                "upload of {} values at {offset} into a vector of {}",
                values.len(),
                self.len
            )));
        }
        if values.is_empty() {
            return Ok(());
        }
        // SAFETY: the destination range lies inside the allocation; the stream orders the
        // copy after earlier work, and pageable memory is staged before the call returns.
        unsafe { result::memcpy_htod_async(self.at(offset), values, stream.cu_stream()) }
            .map_err(GpuError::driver)
    }

    /// Every element, read back after the stream's earlier work.
    pub fn download(&self, stream: &CudaStream) -> Result<Vec<T>, GpuError> {
        let mut out = vec![unsafe { std::mem::zeroed::<T>() }; self.len];
        // SAFETY: `out` holds `len` values; the stream is synchronised before it is read.
        unsafe { result::memcpy_dtoh_async(&mut out[..], self.ptr, stream.cu_stream()) }
            .map_err(GpuError::driver)?;
        stream.synchronize().map_err(GpuError::driver)?;
        Ok(out)
    }
}
