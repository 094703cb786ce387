//! havn-onnx: ONNX models as havn-exec workflows.
//!
//! - [`import`]: a bounded protobuf decode of the file (the vendored `onnx.proto` through
//!   prost), then the graph walk: shape arithmetic folded, each operator mapped to one
//!   deterministic havn-exec op ([`ops`]), unsupported operators refused by name.
//! - [`Graph::instantiate`]: one copy of the graph inside a larger DAG (ids prefixed,
//!   inputs bound), so a multi-step sampler is one manifest.
//! - [`diffusion`]: the `diffusion` workflow on the shipped terrain consistency UNet.

pub mod consts;
pub mod diffusion;
pub mod error;
mod fuse;
pub mod import;
pub mod ops;

/// The ONNX protobuf messages (generated from `proto/onnx/onnx.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use error::{OnnxError, Result};
pub use import::{import, Graph};

use havn_exec::manifest::Node;
use std::collections::BTreeMap;

impl Graph {
    /// The graph's nodes for one instance: ids become `prefix` + id, graph inputs are
    /// replaced by the DAG names in `bind` (every input must be bound), weights keep their
    /// global names. Returns the nodes and the DAG id of each ONNX output.
    pub fn instantiate(
        &self,
        prefix: &str,
        bind: &BTreeMap<String, String>,
    ) -> Result<(Vec<Node>, BTreeMap<String, String>)> {
        for i in &self.inputs {
            if !bind.contains_key(&i.name) {
                return Err(OnnxError::Model(format!("input {:?} is not bound", i.name)));
            }
        }
        let map = |r: &String| -> String {
            if let Some(b) = bind.get(r) {
                b.clone()
            } else if r.starts_with(import::WEIGHT_PREFIX) {
                r.clone()
            } else {
                format!("{prefix}{r}")
            }
        };
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                id: format!("{prefix}{}", n.id),
                op: n.op.clone(),
                inputs: n.inputs.iter().map(map).collect(),
            })
            .collect();
        let outs = self
            .outputs
            .iter()
            .map(|(name, r)| (name.clone(), map(r)))
            .collect();
        Ok((nodes, outs))
    }
}
