//! CUDA back end (placeholder until the GPU path is built).
use super::{Device, DeviceError, DeviceInfo, Job, JobResult};

#[derive(Debug, thiserror::Error)]
pub enum CudaUnavailable {
    #[error("CUDA support is not built into this version")]
    NotBuilt,
}

pub struct CudaDevice {
    info: DeviceInfo,
}

impl CudaDevice {
    pub fn open(_workers: usize) -> Result<Self, CudaUnavailable> {
        Err(CudaUnavailable::NotBuilt)
    }
}

impl Device for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn process(&self, _job: &Job<'_>) -> Result<JobResult, DeviceError> {
        Err(DeviceError("CUDA support is not built into this version".into()))
    }
}
