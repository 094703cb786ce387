//! The `pcrs` file format that `tpm2_quote -o` writes and `tpm2_checkquote -f` reads
//! (tpm2-tools 5.x "serialized" format: raw little-endian C structs).
//!
//! Layout: `TPML_PCR_SELECTION` as a C struct (u32 count, 16 × {u16 hash, u8
//! sizeofSelect, u8[4] pcrSelect, u8 pad}) = 132 bytes; u32 number of digest lists;
//! then that many `TPML_DIGEST` C structs (u32 count, 8 × {u16 size, u8[64]}) = 532 bytes
//! each. PCR values fill the lists in selection order, 8 per list.

use crate::error::ParseError;
use crate::wire::{PcrSelection, MAX_PCR_BANKS, MAX_SIZEOF_SELECT};

const SEL_STRUCT: usize = 4 + 16 * 8;
const DIGEST_ENTRY: usize = 2 + 64;
const DIGEST_LIST: usize = 4 + 8 * DIGEST_ENTRY;
const MAX_LISTS: u32 = 64;

fn le_u32(b: &[u8], what: &'static str, offset: usize) -> Result<u32, ParseError> {
    let s: [u8; 4] = b
        .get(offset..offset.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .ok_or(ParseError::Truncated { what, offset })?;
    Ok(u32::from_le_bytes(s))
}

fn le_u16(b: &[u8], what: &'static str, offset: usize) -> Result<u16, ParseError> {
    let s: [u8; 2] = b
        .get(offset..offset.saturating_add(2))
        .and_then(|s| s.try_into().ok())
        .ok_or(ParseError::Truncated { what, offset })?;
    Ok(u16::from_le_bytes(s))
}

/// Write the pcrs file for a selection and its values (in selection order).
pub fn write_pcrs_file(sel: &[PcrSelection], values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0u8; SEL_STRUCT];
    let count = u32::try_from(sel.len().min(16)).unwrap_or(16);
    if let Some(c) = out.get_mut(0..4) {
        c.copy_from_slice(&count.to_le_bytes());
    }
    for (i, s) in sel.iter().take(16).enumerate() {
        let base = 4 + i * 8;
        if let Some(e) = out.get_mut(base..base + 8) {
            let [h0, h1] = s.hash.to_le_bytes();
            let bm = s.bitmap();
            let mut entry = [h0, h1, s.size_of_select, 0, 0, 0, 0, 0];
            for (dst, src) in entry.iter_mut().skip(3).zip(bm.iter().take(4)) {
                *dst = *src;
            }
            e.copy_from_slice(&entry);
        }
    }
    let chunks: Vec<&[Vec<u8>]> = values.chunks(8).collect();
    out.extend_from_slice(
        &u32::try_from(chunks.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for chunk in chunks {
        let mut list = vec![0u8; DIGEST_LIST];
        let n = u32::try_from(chunk.len()).unwrap_or(8);
        if let Some(c) = list.get_mut(0..4) {
            c.copy_from_slice(&n.to_le_bytes());
        }
        for (i, d) in chunk.iter().enumerate() {
            let base = 4 + i * DIGEST_ENTRY;
            let len = d.len().min(64);
            if let Some(c) = list.get_mut(base..base + 2) {
                c.copy_from_slice(&u16::try_from(len).unwrap_or(64).to_le_bytes());
            }
            if let (Some(c), Some(src)) = (list.get_mut(base + 2..base + 2 + len), d.get(..len)) {
                c.copy_from_slice(src);
            }
        }
        out.extend_from_slice(&list);
    }
    out
}

/// Parse a pcrs file into its selection and the PCR values in selection order.
pub fn parse_pcrs_file(b: &[u8]) -> Result<(Vec<PcrSelection>, Vec<Vec<u8>>), ParseError> {
    let count = le_u32(b, "pcrs.selection.count", 0)?;
    if count > MAX_PCR_BANKS {
        return Err(ParseError::TooMany {
            what: "pcrs.selection.count",
            count,
            max: MAX_PCR_BANKS,
        });
    }
    let mut sel = Vec::new();
    for i in 0..usize::try_from(count).unwrap_or(0) {
        let base = 4 + i * 8;
        let e = b.get(base..base + 8).ok_or(ParseError::Truncated {
            what: "pcrs.selection",
            offset: base,
        })?;
        let hash = le_u16(e, "pcrs.selection.hash", 0)?;
        let size = *e.get(2).ok_or(ParseError::Truncated {
            what: "pcrs.sizeofSelect",
            offset: base,
        })?;
        if size > MAX_SIZEOF_SELECT {
            return Err(ParseError::TooLong {
                what: "pcrs.sizeofSelect",
                len: usize::from(size),
                max: usize::from(MAX_SIZEOF_SELECT),
            });
        }
        sel.push(PcrSelection::from_bitmap(
            hash,
            size,
            e.get(3..).unwrap_or_default(),
        ));
    }
    if b.len() < SEL_STRUCT {
        return Err(ParseError::Truncated {
            what: "pcrs.selection",
            offset: b.len(),
        });
    }
    let lists = le_u32(b, "pcrs.digest_lists", SEL_STRUCT)?;
    if lists > MAX_LISTS {
        return Err(ParseError::TooMany {
            what: "pcrs.digest_lists",
            count: lists,
            max: MAX_LISTS,
        });
    }
    let mut values = Vec::new();
    let mut off = SEL_STRUCT + 4;
    for _ in 0..lists {
        let list = b.get(off..off + DIGEST_LIST).ok_or(ParseError::Truncated {
            what: "pcrs.TPML_DIGEST",
            offset: off,
        })?;
        let n = le_u32(list, "pcrs.TPML_DIGEST.count", 0)?;
        if n > 8 {
            return Err(ParseError::TooMany {
                what: "pcrs.TPML_DIGEST.count",
                count: n,
                max: 8,
            });
        }
        for i in 0..usize::try_from(n).unwrap_or(0) {
            let base = 4 + i * DIGEST_ENTRY;
            let len = usize::from(le_u16(list, "pcrs.TPM2B_DIGEST.size", base)?);
            if len > 64 {
                return Err(ParseError::TooLong {
                    what: "pcrs.TPM2B_DIGEST.size",
                    len,
                    max: 64,
                });
            }
            let d = list
                .get(base + 2..base + 2 + len)
                .ok_or(ParseError::Truncated {
                    what: "pcrs.TPM2B_DIGEST",
                    offset: off + base,
                })?;
            values.push(d.to_vec());
        }
        off += DIGEST_LIST;
    }
    if off != b.len() {
        return Err(ParseError::TrailingBytes {
            what: "pcrs",
            count: b.len().saturating_sub(off),
        });
    }
    Ok((sel, values))
}
