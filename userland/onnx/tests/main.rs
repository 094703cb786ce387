//! havn-onnx tests: hostile files, the importer's op mapping, the terrain UNet against
//! onnxruntime, and the diffusion workflow's determinism.

mod common;
mod hostile;
mod reference;
mod workflow;
