//! Workflow manifests (a DAG of tensor ops with named inputs and outputs), their
//! canonical bytes and checksum, the manifest registry, and static validation.

use crate::error::{ExecError, Result};
use crate::ops::Op;
use crate::tensor::DType;
use havn_proto::{Cid, ComputeClass};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A declared tensor: name, dtype, shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// One DAG node: its output is named by `id`; `inputs` name job inputs, weights or
/// other nodes' ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub op: Op,
    pub inputs: Vec<String>,
}

/// A workflow manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Workflow name (`lm`, `diffusion`, `audio`, …).
    pub name: String,
    /// Smallest compute class that may run it.
    pub class: ComputeClass,
    /// Job inputs supplied per run.
    pub inputs: Vec<TensorSpec>,
    /// CID of the weights safetensors file, if the workflow has weights.
    pub weights_cid: Option<Cid>,
    /// Tensors expected in the weights file.
    pub weights: Vec<TensorSpec>,
    /// The DAG.
    pub nodes: Vec<Node>,
    /// Names exported into `outputs.safetensors`.
    pub outputs: Vec<String>,
}

/// Largest tensor the engine accepts (elements): keeps every index within i32 on the GPU
/// and refuses absurd shapes before allocating.
pub const MAX_ELEMS: usize = 1 << 30;

/// sha3-256 of a manifest's canonical bytes.
pub type Checksum = [u8; 32];

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses 64 hex digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Manifest {
    /// Canonical bytes: compact JSON in struct field order (no maps, so no ordering
    /// freedom; floats print as shortest round-trip).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain structs/enums/vecs to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// sha3-256 over a domain tag and the canonical bytes.
    pub fn checksum(&self) -> Checksum {
        let mut h = Sha3_256::new();
        h.update(b"havn-exec/manifest/v1\0");
        h.update(self.canonical_bytes());
        h.finalize().into()
    }
    /// Parses manifest JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Validates the DAG statically and returns the plan: topological order (Kahn's
    /// algorithm, ties broken by manifest position) and every node's output spec.
    pub fn plan(&self) -> Result<Plan> {
        let mut known: HashMap<&str, (DType, Vec<usize>)> = HashMap::new();
        for s in self.inputs.iter().chain(&self.weights) {
            if crate::tensor::numel(&s.shape) > MAX_ELEMS {
                return Err(ExecError::ShapeMismatch {
                    name: s.name.clone(),
                    expected: vec![MAX_ELEMS],
                    got: s.shape.clone(),
                });
            }
            if known.insert(&s.name, (s.dtype, s.shape.clone())).is_some() {
                return Err(ExecError::DuplicateName {
                    name: s.name.clone(),
                });
            }
        }
        let mut idx: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if known.contains_key(n.id.as_str()) || idx.insert(&n.id, i).is_some() {
                return Err(ExecError::DuplicateName { name: n.id.clone() });
            }
        }
        // Edges and in-degrees.
        let mut indeg = vec![0usize; self.nodes.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in &n.inputs {
                if let Some(&p) = idx.get(inp.as_str()) {
                    indeg[i] += 1;
                    users[p].push(i);
                } else if !known.contains_key(inp.as_str()) {
                    return Err(ExecError::UnknownReference {
                        node: n.id.clone(),
                        name: inp.clone(),
                    });
                }
            }
        }
        let mut ready: BTreeSet<usize> = (0..self.nodes.len()).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck = (0..self.nodes.len()).find(|&i| indeg[i] > 0).unwrap_or(0);
            return Err(ExecError::Cycle {
                node: self
                    .nodes
                    .get(stuck)
                    .map(|n| n.id.clone())
                    .unwrap_or_default(),
            });
        }
        let mut specs = BTreeMap::new();
        for &i in &order {
            let n = &self.nodes[i];
            let ins: Vec<(DType, Vec<usize>)> = n
                .inputs
                .iter()
                .map(|s| {
                    known
                        .get(s.as_str())
                        .cloned()
                        .ok_or_else(|| ExecError::UnknownReference {
                            node: n.id.clone(),
                            name: s.clone(),
                        })
                })
                .collect::<Result<_>>()?;
            let out = n.op.infer(&n.id, &ins)?;
            if crate::tensor::numel(&out.1) > MAX_ELEMS {
                return Err(ExecError::node(
                    &n.id,
                    n.op.name(),
                    format!("output {:?} exceeds {MAX_ELEMS} elements", out.1),
                ));
            }
            specs.insert(n.id.clone(), out.clone());
            known.insert(&n.id, out);
        }
        for o in &self.outputs {
            if !known.contains_key(o.as_str()) {
                return Err(ExecError::UnknownReference {
                    node: "<outputs>".into(),
                    name: o.clone(),
                });
            }
        }
        Ok(Plan {
            order,
            out_specs: specs,
        })
    }
}

/// A validated execution plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Node indices in execution (topological) order; the Merkle leaf order.
    pub order: Vec<usize>,
    /// Output (dtype, shape) per node id.
    pub out_specs: BTreeMap<String, (DType, Vec<usize>)>,
}

/// The manifest registry: checksums of the workflows this node accepts.
#[derive(Debug, Clone, Default)]
pub struct ManifestRegistry {
    entries: BTreeMap<Checksum, String>,
}

impl ManifestRegistry {
    /// Empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers a manifest and returns its checksum.
    pub fn register(&mut self, m: &Manifest) -> Checksum {
        let c = m.checksum();
        self.entries.insert(c, m.name.clone());
        c
    }
    /// True if `c` is registered.
    pub fn contains(&self, c: &Checksum) -> bool {
        self.entries.contains_key(c)
    }
    /// Refuses a manifest unless `claimed` is registered and the manifest hashes to it.
    pub fn check(&self, claimed: &Checksum, m: &Manifest) -> Result<()> {
        if !self.contains(claimed) {
            return Err(ExecError::UnknownWorkflow {
                checksum: hex(claimed),
            });
        }
        let actual = m.checksum();
        if actual != *claimed {
            return Err(ExecError::ManifestChecksumMismatch {
                expected: hex(claimed),
                actual: hex(&actual),
            });
        }
        Ok(())
    }
}
