//! A bounded reader of CTranslate2 `model.bin` files (binary versions 4–6).
//!
//! Layout (little-endian): u32 binary version; spec name (string); u32 spec revision;
//! u32 variable count, then per variable: name (string), rank (u8), rank × u32 dims,
//! dtype id (u8: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), u32 byte count, the raw
//! bytes; then u32 alias count and (alias, target) string pairs. A string is a u16
//! length followed by that many bytes, the last of them a NUL.
//!
//! Every count and length is checked against the bytes left before anything is
//! allocated from it; a variable's byte count must equal its dims' product times the
//! dtype size; names must be UTF-8 and unique; an alias must name an existing variable
//! (or an earlier alias); no bytes may follow the aliases. A hostile file gets an
//! [`AsrError::Ct2`] naming the field and its offset, never a panic.

use crate::error::{AsrError, Result};
use std::collections::BTreeMap;

/// Most dimensions a variable may have.
pub const MAX_RANK: usize = 8;
/// Oldest binary version read (dtype ids appeared in 4).
pub const MIN_VERSION: u32 = 4;
/// Newest binary version read.
pub const MAX_VERSION: u32 = 6;

/// Element type of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    /// The type of a CTranslate2 dtype id.
    pub fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One variable: where its bytes lie in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: DType,
    /// Offset of the first data byte in the file.
    pub start: usize,
    /// Data bytes (`numel · dtype size`).
    pub len: usize,
}

impl Variable {
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.len / self.dtype.size()
    }
}

/// A parsed file: header, variables in file order and aliases, borrowing the bytes.
#[derive(Debug)]
pub struct Ct2File<'a> {
    pub binary_version: u32,
    pub spec: String,
    pub revision: u32,
    pub variables: Vec<Variable>,
    /// Alias → index into `variables`.
    pub aliases: BTreeMap<String, usize>,
    index: BTreeMap<String, usize>,
    bytes: &'a [u8],
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(AsrError::ct2(
                self.at,
                field,
                format!("needs {n} bytes, only {} left", self.left()),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &str) -> Result<u16> {
        let s = self.take(2, field)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, field: &str) -> Result<u32> {
        let s = self.take(4, field)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn string(&mut self, field: &str) -> Result<String> {
        let at = self.at;
        let n = self.u16(field)? as usize;
        let raw = self.take(n, field)?;
        let Some((&0, body)) = raw.split_last() else {
            return Err(AsrError::ct2(at, field, "string does not end with a NUL"));
        };
        if body.contains(&0) {
            return Err(AsrError::ct2(at, field, "string has a NUL inside"));
        }
        String::from_utf8(body.to_vec())
            .map_err(|e| AsrError::ct2(at, field, format!("not UTF-8: {e}")))
    }
}

impl<'a> Ct2File<'a> {
    /// Parses a whole file.
    pub fn parse(bytes: &'a [u8]) -> Result<Ct2File<'a>> {
        let mut c = Cursor { b: bytes, at: 0 };
        let binary_version = c.u32("binary version")?;
        if !(MIN_VERSION..=MAX_VERSION).contains(&binary_version) {
            return Err(AsrError::ct2(
                0,
                "binary version",
                format!("{binary_version} is not supported ({MIN_VERSION}..={MAX_VERSION})"),
            ));
        }
        let spec = c.string("spec name")?;
        let revision = c.u32("spec revision")?;
        let count_at = c.at;
        let count = c.u32("variable count")? as usize;
        // The smallest variable takes 2 + 1 (name) + 1 (rank) + 1 (dtype) + 4 (bytes) + 1.
        if count > c.left() / 10 {
            return Err(AsrError::ct2(
                count_at,
                "variable count",
                format!("{count} variables cannot fit in {} bytes", c.left()),
            ));
        }
        let mut variables: Vec<Variable> = Vec::with_capacity(count);
        let mut index = BTreeMap::new();
        for i in 0..count {
            let at = c.at;
            let name = c.string(&format!("variable {i} name"))?;
            let rank = c.u8(&format!("variable {name:?} rank"))? as usize;
            if rank > MAX_RANK {
                return Err(AsrError::ct2(
                    at,
                    format!("variable {name:?} rank"),
                    format!("{rank} dims (at most {MAX_RANK})"),
                ));
            }
            let mut dims = Vec::with_capacity(rank);
            let mut numel: usize = 1;
            for d in 0..rank {
                let v = c.u32(&format!("variable {name:?} dim {d}"))? as usize;
                numel = numel.checked_mul(v).ok_or_else(|| {
                    AsrError::ct2(c.at, format!("variable {name:?} dims"), "product overflows")
                })?;
                dims.push(v);
            }
            let dt_at = c.at;
            let id = c.u8(&format!("variable {name:?} dtype"))?;
            let dtype = DType::from_id(id).ok_or_else(|| {
                AsrError::ct2(
                    dt_at,
                    format!("variable {name:?} dtype"),
                    format!("unknown dtype id {id}"),
                )
            })?;
            let len_at = c.at;
            let len = c.u32(&format!("variable {name:?} byte count"))? as usize;
            let want = numel.checked_mul(dtype.size());
            if want != Some(len) {
                return Err(AsrError::ct2(
                    len_at,
                    format!("variable {name:?} byte count"),
                    format!("{len} bytes, but dims {dims:?} of {dtype:?} need {want:?}"),
                ));
            }
            let start = c.at;
            c.take(len, &format!("variable {name:?} data"))?;
            if index.insert(name.clone(), variables.len()).is_some() {
                return Err(AsrError::ct2(
                    at,
                    format!("variable {name:?} name"),
                    "appears twice",
                ));
            }
            variables.push(Variable {
                name,
                dims,
                dtype,
                start,
                len,
            });
        }
        let mut aliases = BTreeMap::new();
        {
            let at = c.at;
            let n = c.u32("alias count")? as usize;
            // An alias pair takes at least 2 × (2 + 1) bytes.
            if n > c.left() / 6 {
                return Err(AsrError::ct2(
                    at,
                    "alias count",
                    format!("{n} aliases cannot fit in {} bytes", c.left()),
                ));
            }
            for i in 0..n {
                let at = c.at;
                let alias = c.string(&format!("alias {i} name"))?;
                let target = c.string(&format!("alias {alias:?} target"))?;
                let ix = index
                    .get(&target)
                    .or_else(|| aliases.get(&target))
                    .copied()
                    .ok_or_else(|| {
                        AsrError::ct2(
                            at,
                            format!("alias {alias:?} target"),
                            format!("{target:?} is not a variable"),
                        )
                    })?;
                if index.contains_key(&alias) || aliases.insert(alias.clone(), ix).is_some() {
                    return Err(AsrError::ct2(
                        at,
                        format!("alias {alias:?} name"),
                        "is already a variable or alias",
                    ));
                }
            }
        }
        if c.left() != 0 {
            return Err(AsrError::ct2(
                c.at,
                "end of file",
                format!("{} bytes after the aliases", c.left()),
            ));
        }
        Ok(Ct2File {
            binary_version,
            spec,
            revision,
            variables,
            aliases,
            index,
            bytes,
        })
    }

    /// The variable called `name` (or aliased so), if any.
    pub fn find(&self, name: &str) -> Option<&Variable> {
        self.index
            .get(name)
            .or_else(|| self.aliases.get(name))
            .and_then(|&i| self.variables.get(i))
    }

    /// The variable called `name` (or aliased so).
    pub fn get(&self, name: &str) -> Result<&Variable> {
        self.find(name)
            .ok_or_else(|| AsrError::var(name, "not in the model file"))
    }

    /// The raw bytes of a variable.
    pub fn data(&self, v: &Variable) -> &'a [u8] {
        &self.bytes[v.start..v.start + v.len]
    }

    /// A floating-point variable converted exactly to f32, checked to have `dims`
    /// and only finite values.
    pub fn f32s(&self, name: &str, dims: &[usize]) -> Result<Vec<f32>> {
        let v = self.get(name)?;
        if v.dims != dims {
            return Err(AsrError::var(
                name,
                format!("dims {:?}, expected {dims:?}", v.dims),
            ));
        }
        let raw = self.data(v);
        let out: Vec<f32> = match v.dtype {
            DType::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::Bf16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(AsrError::var(
                    name,
                    format!("{other:?} is not a float type (quantized models are not supported)"),
                ))
            }
        };
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(AsrError::var(name, format!("element {i} is not finite")));
        }
        Ok(out)
    }

    /// An integer scalar (any integer dtype, rank 0 or a single element).
    pub fn int(&self, name: &str) -> Result<i64> {
        let v = self.get(name)?;
        let raw = self.data(v);
        if v.numel() != 1 {
            return Err(AsrError::var(
                name,
                format!("dims {:?}, expected a scalar", v.dims),
            ));
        }
        Ok(match v.dtype {
            DType::I8 => i64::from(raw[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
            DType::I32 => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
            other => {
                return Err(AsrError::var(
                    name,
                    format!("{other:?} is not an integer type"),
                ))
            }
        })
    }
}
