//! Host tensors, safetensors I/O and the domain-separated tensor hash.

use crate::error::{ExecError, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

/// Element types the engine computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    F32,
    I32,
    I8,
}

impl DType {
    fn tag(self) -> u8 {
        match self {
            DType::F32 => 1,
            DType::I32 => 2,
            DType::I8 => 3,
        }
    }
    fn st(self) -> Dtype {
        match self {
            DType::F32 => Dtype::F32,
            DType::I32 => Dtype::I32,
            DType::I8 => Dtype::I8,
        }
    }
}

/// Tensor storage.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I8(Vec<i8>),
}

/// A dense row-major tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Number of elements of a shape (saturating: absurd shapes are caught by length checks).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

impl Tensor {
    /// An f32 tensor; the data length must match the shape.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Self::new(shape, Data::F32(data))
    }
    /// An i32 tensor.
    pub fn i32(shape: Vec<usize>, data: Vec<i32>) -> Result<Self> {
        Self::new(shape, Data::I32(data))
    }
    /// An i8 tensor.
    pub fn i8(shape: Vec<usize>, data: Vec<i8>) -> Result<Self> {
        Self::new(shape, Data::I8(data))
    }
    fn new(shape: Vec<usize>, data: Data) -> Result<Self> {
        let t = Tensor { shape, data };
        if t.len() != numel(&t.shape) {
            return Err(ExecError::ShapeMismatch {
                name: "<tensor>".into(),
                expected: t.shape.clone(),
                got: vec![t.len()],
            });
        }
        Ok(t)
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            Data::F32(_) => DType::F32,
            Data::I32(_) => DType::I32,
            Data::I8(_) => DType::I8,
        }
    }
    /// Number of stored elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I8(v) => v.len(),
        }
    }
    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The f32 data, or a dtype error naming `name`.
    pub fn as_f32(&self, name: &str) -> Result<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            _ => Err(ExecError::DTypeMismatch {
                name: name.into(),
                expected: DType::F32,
                got: self.dtype(),
            }),
        }
    }
    /// The i32 data.
    pub fn as_i32(&self, name: &str) -> Result<&[i32]> {
        match &self.data {
            Data::I32(v) => Ok(v),
            _ => Err(ExecError::DTypeMismatch {
                name: name.into(),
                expected: DType::I32,
                got: self.dtype(),
            }),
        }
    }
    /// The i8 data.
    pub fn as_i8(&self, name: &str) -> Result<&[i8]> {
        match &self.data {
            Data::I8(v) => Ok(v),
            _ => Err(ExecError::DTypeMismatch {
                name: name.into(),
                expected: DType::I8,
                got: self.dtype(),
            }),
        }
    }
    /// Little-endian bytes of the data.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
        }
    }
    /// Index of the first non-finite element, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        match &self.data {
            Data::F32(v) => v.iter().position(|x| !x.is_finite()),
            _ => None,
        }
    }
    /// The commitment to a tensor (see [`Tensor::hash_par`]), computed on one thread.
    pub fn hash(&self) -> [u8; 32] {
        self.hash_par(1)
    }

    /// The commitment to a tensor: sha3-256 over a domain tag, dtype, rank, dims, the
    /// chunk count and the sha3-256 of each [`HASH_CHUNK`]-byte chunk of the
    /// little-endian data (the last may be shorter; an empty tensor has no chunk). The
    /// chunk hashes are independent, so `threads` threads compute them (Keccak runs at
    /// ~400 MB/s a core: a flat hash of every node output would cost more than most
    /// ops); the result never depends on `threads`.
    pub fn hash_par(&self, threads: usize) -> [u8; 32] {
        let bytes = self.to_le_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(HASH_CHUNK).collect();
        let mut leaves = vec![[0u8; 32]; chunks.len()];
        let leaf = |c: &[u8]| -> [u8; 32] { Sha3_256::digest(c).into() };
        let threads = threads.clamp(1, chunks.len().max(1));
        if threads == 1 {
            for (l, c) in leaves.iter_mut().zip(&chunks) {
                *l = leaf(c);
            }
        } else {
            let per = chunks.len().div_ceil(threads);
            std::thread::scope(|s| {
                for (ls, cs) in leaves.chunks_mut(per).zip(chunks.chunks(per)) {
                    s.spawn(move || {
                        for (l, c) in ls.iter_mut().zip(cs) {
                            *l = leaf(c);
                        }
                    });
                }
            });
        }
        let mut h = Sha3_256::new();
        h.update(b"havn-exec/tensor/v2\0");
        h.update([self.dtype().tag()]);
        h.update((self.shape.len() as u64).to_le_bytes());
        for d in &self.shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update((leaves.len() as u64).to_le_bytes());
        for l in &leaves {
            h.update(l);
        }
        h.finalize().into()
    }

    fn from_view(name: &str, what: &str, v: &TensorView<'_>) -> Result<Self> {
        let shape = v.shape().to_vec();
        let b = v.data();
        let t = match v.dtype() {
            Dtype::F32 => Tensor {
                shape,
                data: Data::F32(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
            },
            Dtype::I32 => Tensor {
                shape,
                data: Data::I32(
                    b.chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
            },
            Dtype::I8 => Tensor {
                shape,
                data: Data::I8(b.iter().map(|&x| x as i8).collect()),
            },
            other => {
                return Err(ExecError::UnsupportedDType {
                    name: format!("{what}:{name}"),
                    dtype: format!("{other:?}"),
                })
            }
        };
        if t.len() != numel(&t.shape) {
            return Err(ExecError::Safetensors {
                what: what.into(),
                reason: format!("{name}: bad data length"),
            });
        }
        Ok(t)
    }
}

/// Chunk size of the tensor commitment's data hashing (256 KiB).
pub const HASH_CHUNK: usize = 256 * 1024;

/// Parses a safetensors file into named tensors (sorted by name).
pub fn load_safetensors(bytes: &[u8], what: &str) -> Result<Vec<(String, Tensor)>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| ExecError::Safetensors {
        what: what.into(),
        reason: e.to_string(),
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let v = st.tensor(&n).map_err(|e| ExecError::Safetensors {
            what: what.into(),
            reason: e.to_string(),
        })?;
        let t = Tensor::from_view(&n, what, &v)?;
        out.push((n, t));
    }
    Ok(out)
}

/// Serialises named tensors to safetensors bytes. Deterministic: no metadata, and the
/// safetensors crate orders entries by dtype alignment then name.
pub fn save_safetensors(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let bufs: Vec<(String, DType, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype(), t.shape.clone(), t.to_le_bytes()))
        .collect();
    let mut views = Vec::with_capacity(bufs.len());
    for (n, d, s, b) in &bufs {
        let v = TensorView::new(d.st(), s.clone(), b).map_err(|e| ExecError::Safetensors {
            what: n.clone(),
            reason: e.to_string(),
        })?;
        views.push((n.clone(), v));
    }
    safetensors::serialize(views, None).map_err(|e| ExecError::Safetensors {
        what: "output".into(),
        reason: e.to_string(),
    })
}
