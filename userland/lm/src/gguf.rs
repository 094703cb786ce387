//! A bounded GGUF (v2, v3) reader. Every count and length read from the file is checked
//! against the bytes that remain before anything is allocated from it, so a hostile file
//! gets an error naming what was wrong and where, never a panic or a huge allocation.
//!
//! Layout (little-endian): `"GGUF"`, u32 version, u64 tensor count, u64 metadata count,
//! the metadata key/value pairs, the tensor infos (name, rank, dims, type, offset), then
//! the tensor data, aligned to `general.alignment` (default 32).

use crate::error::{LmError, Result};
use std::collections::BTreeMap;

/// Most tensors a file may declare.
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata entries a file may declare.
pub const MAX_KV: u64 = 1 << 16;
/// Longest string (key, value, tensor name) accepted: 16 MiB.
pub const MAX_STRING: u64 = 16 << 20;
/// Most dimensions of a tensor.
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays in metadata.
pub const MAX_ARRAY_DEPTH: usize = 2;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// The value as f32 (from f32, or f64 when it converts exactly).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) if f64::from(v as f32) == v => Some(v as f32),
            _ => None,
        }
    }
    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Tensor element encodings this reader knows (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            _ => return None,
        })
    }
    /// Elements per block.
    pub fn block_len(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
        }
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q8_0 => 34,
        }
    }
    /// Name as ggml spells it.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
        }
    }
}

/// One tensor's description; `dims[0]` is the innermost (contiguous) dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the file (already checked in bounds).
    pub start: usize,
    /// Length of the data in bytes.
    pub len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata and tensor directory over the file's bytes.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: impl Into<String>) -> LmError {
        LmError::Gguf {
            offset: self.pos as u64,
            reason: what.into(),
        }
    }
    fn remaining(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what}: needs {n} bytes, {} left in the file",
                self.remaining()
            )));
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(self.err(format!("{what}: string of {n} bytes (limit {MAX_STRING})")));
        }
        let at = self.pos;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| LmError::Gguf {
            offset: at as u64,
            reason: format!("{what}: not UTF-8"),
        })
    }
    fn value(&mut self, ty: u32, depth: usize, what: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(what)?[0]),
            1 => Value::I8(self.arr::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            7 => match self.arr::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{what}: bool byte {b}"))),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let ety = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte (strings 8): a count larger than
                // the bytes left is a lie, refused before allocating.
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(self.err(format!("{what}: unknown array element type {t}"))),
                };
                if n.checked_mul(min)
                    .is_none_or(|need| need > self.remaining())
                {
                    return Err(self.err(format!(
                        "{what}: array of {n} elements does not fit in the {} bytes left",
                        self.remaining()
                    )));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1, what)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(what)?)),
            t => return Err(self.err(format!("{what}: unknown value type {t}"))),
        })
    }
}

impl Gguf {
    /// Parses and checks a whole GGUF file held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Gguf> {
        let mut c = Cursor { b: bytes, pos: 0 };
        if c.take(4, "magic")? != b"GGUF" {
            return Err(LmError::Gguf {
                offset: 0,
                reason: "not a GGUF file (magic is not \"GGUF\")".into(),
            });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!("unsupported GGUF version {version} (2 or 3)")));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > MAX_TENSORS || n_kv > MAX_KV {
            return Err(c.err(format!(
                "{n_tensors} tensors / {n_kv} metadata entries (limits {MAX_TENSORS} / {MAX_KV})"
            )));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, 0, &key)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(c.err(format!("duplicate metadata key {key:?}")));
            }
        }
        let align = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 16 => a,
                _ => {
                    return Err(c.err(format!(
                        "general.alignment {v:?} is not a power of two ≤ 65536"
                    )))
                }
            },
        };
        let mut raw = Vec::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor #{i} name"))?;
            let rank = c.u32(&name)?;
            if rank == 0 || rank > MAX_DIMS {
                return Err(c.err(format!("tensor {name:?}: rank {rank} (1..={MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(rank as usize);
            for _ in 0..rank {
                dims.push(c.u64(&name)?);
            }
            let tid = c.u32(&name)?;
            let ty = GgmlType::from_id(tid).ok_or_else(|| {
                c.err(format!("tensor {name:?}: ggml type {tid} is not supported"))
            })?;
            let off = c.u64(&name)?;
            raw.push((name, dims, ty, off));
        }
        let data_start = (c.pos as u64).div_ceil(align) * align;
        let data_len = (bytes.len() as u64).saturating_sub(data_start);
        let mut tensors = Vec::with_capacity(raw.len());
        let mut seen = std::collections::BTreeSet::new();
        for (name, dims, ty, off) in raw {
            let bad = |r: String| LmError::Tensor {
                name: name.clone(),
                reason: r,
            };
            if !seen.insert(name.clone()) {
                return Err(bad("declared twice".into()));
            }
            let numel = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&n| n > 0 && n <= 1 << 40)
                .ok_or_else(|| bad(format!("dims {dims:?} give no valid element count")))?;
            if dims[0] % ty.block_len() != 0 {
                return Err(bad(format!(
                    "row length {} is not a multiple of the {} block of {}",
                    dims[0],
                    ty.name(),
                    ty.block_len()
                )));
            }
            let len = numel / ty.block_len() * ty.block_bytes();
            if off % align != 0 {
                return Err(bad(format!("data offset {off} is not aligned to {align}")));
            }
            if off.checked_add(len).is_none_or(|end| end > data_len) {
                return Err(bad(format!(
                    "data [{off}, +{len}) runs past the end of the file's {data_len} data bytes"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                start: (data_start + off) as usize,
                len: len as usize,
            });
        }
        // No two tensors may share bytes: each is dequantized into its own buffer, so
        // aliased data would let a small file ask for any amount of memory. Sorted by
        // start, the first overlap is always between neighbours.
        let mut spans: Vec<(usize, usize)> = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.start, i))
            .collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            let (a, b) = (&tensors[w[0].1], &tensors[w[1].1]);
            if b.start < a.start + a.len {
                return Err(LmError::Tensor {
                    name: b.name.clone(),
                    reason: format!("data overlaps tensor {:?}", a.name),
                });
            }
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
        })
    }

    /// A metadata value, or an error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| LmError::Metadata {
            key: key.into(),
            reason: "missing".into(),
        })
    }

    /// An unsigned integer metadata value.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key)?;
        v.as_u64().ok_or_else(|| LmError::Metadata {
            key: key.into(),
            reason: format!("expected an unsigned integer, found {v:?}"),
        })
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key)?;
        v.as_str().ok_or_else(|| LmError::Metadata {
            key: key.into(),
            reason: "expected a string".into(),
        })
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| LmError::Tensor {
                name: name.into(),
                reason: "missing from the file".into(),
            })
    }
}
