//! The GGUF reader against valid and hostile files, all written by `synth`:
//! - a valid file round-trips (every metadata type, tensor infos, exact dequantization of
//!   hand-made F32/F16/Q8_0/Q4_0/Q4_1 blocks);
//! - a file cut at any byte is an error naming the offset or the tensor;
//! - each hostile header field is refused with its own error, with no allocation beyond
//!   a few KiB (measured by a per-thread counting allocator);
//! - mutated, truncated and spliced files never make the reader, the tokenizer, the
//!   config, the model loader or a chat run panic (proptest);
//! - a synthetic llama loads and chats, with the same tokens at 1 and 2 threads, and
//!   hostile variants of it (NaN weights, wrong shapes, missing tensors, bad heads,
//!   vocabulary mismatches, eos outside the vocabulary, aliased data) are refused.

use crate::synth::{self, Layout, Tensor, Val, F16, F32, Q4_0, Q4_1, Q8_0};
use havn_lm::gguf::{GgmlType, Gguf, Value};
use havn_lm::model::Config;
use havn_lm::quant::dequantize;
use havn_lm::{ChatRequest, ChatTokenizer, LmError, LoadedModel, RunOpts};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

// ---- allocation accounting -------------------------------------------------------------

/// The system allocator, counting the bytes each thread asks for.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn count(n: usize) {
    let _ = ALLOCATED.try_with(|c| c.set(c.get().saturating_add(n as u64)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local Cell without destructor, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        count(l.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        count(l.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, new: usize) -> *mut u8 {
        count(new.saturating_sub(l.size()));
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `f()` and the bytes this thread allocated while running it.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATED.with(Cell::get);
    let r = f();
    (r, ALLOCATED.with(Cell::get) - before)
}

// ---- helpers ---------------------------------------------------------------------------

/// The error of parsing `bytes`, which must fail with at most 64 KiB allocated.
fn refused(bytes: &[u8]) -> LmError {
    let (r, alloc) = allocated_by(|| Gguf::parse(bytes));
    assert!(alloc < 64 << 10, "parse allocated {alloc} bytes");
    match r {
        Ok(g) => panic!("a hostile file parsed: {g:?}"),
        Err(e) => e,
    }
}

/// Asserts that parsing `bytes` fails with an error whose message contains `want`.
#[track_caller]
fn refused_with(bytes: &[u8], want: &str) -> LmError {
    let e = refused(bytes);
    assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
    e
}

/// Asserts a header error at byte `at` containing `want`.
#[track_caller]
fn header_error(bytes: &[u8], at: u64, want: &str) {
    match refused_with(bytes, want) {
        LmError::Gguf { offset, .. } => assert_eq!(offset, at, "offset of {want:?}"),
        e => panic!("expected a header error, got {e}"),
    }
}

/// Asserts a tensor error naming `name` and containing `want`.
#[track_caller]
fn tensor_error(bytes: &[u8], name: &str, want: &str) {
    match refused_with(bytes, want) {
        LmError::Tensor { name: n, .. } => assert_eq!(n, name),
        e => panic!("expected a tensor error, got {e}"),
    }
}

/// A file with one metadata entry `"k"` of `v` and nothing else.
fn one_kv(v: Val) -> Vec<u8> {
    synth::Gguf::default().kv("k", v).build()
}

/// A file with one tensor and nothing else.
fn one_tensor(t: Tensor) -> Vec<u8> {
    synth::Gguf::default().tensor(t).build()
}

/// 16 bytes of Q4_1 data for a [32] tensor plus its 4-byte header: one block.
fn q4_1_block() -> Vec<u8> {
    synth::q4_1(0.5, -1.0, &[3; 32])
}

/// A header: magic, version, counts.
fn header(version: u32, nt: u64, nkv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(nt.to_le_bytes());
    b.extend(nkv.to_le_bytes());
    b
}

fn le16(bits: u16) -> [u8; 2] {
    bits.to_le_bytes()
}

// ---- 1. a valid file round-trips -------------------------------------------------------

/// Every scalar type, as written and as the reader must return it.
fn scalars() -> Vec<(Val, Value)> {
    vec![
        (Val::U8(200), Value::U8(200)),
        (Val::I8(-100), Value::I8(-100)),
        (Val::U16(60000), Value::U16(60000)),
        (Val::I16(-30000), Value::I16(-30000)),
        (Val::U32(4_000_000_000), Value::U32(4_000_000_000)),
        (Val::I32(-2_000_000_000), Value::I32(-2_000_000_000)),
        (Val::F32(1.5e-3), Value::F32(1.5e-3)),
        (Val::Bool(true), Value::Bool(true)),
        (Val::Bool(false), Value::Bool(false)),
        (Val::str("héllo ✓"), Value::Str("héllo ✓".into())),
        (Val::str(""), Value::Str(String::new())),
        (Val::U64(u64::MAX), Value::U64(u64::MAX)),
        (Val::I64(i64::MIN), Value::I64(i64::MIN)),
        (Val::F64(-0.125), Value::F64(-0.125)),
    ]
}

/// The round-trip file: every metadata type (scalars, arrays of each, nested arrays, empty
/// arrays) and one tensor of each supported type with hand-made data, and what the
/// reader must return for it: metadata, then (name, dims, type, expected values).
#[allow(clippy::type_complexity)]
fn round_trip_file(
    version: u32,
    align: u64,
) -> (
    synth::Gguf,
    BTreeMap<String, Value>,
    Vec<(&'static str, Vec<u64>, GgmlType, Vec<f32>)>,
) {
    let mut w = synth::Gguf {
        version,
        align,
        ..Default::default()
    };
    let mut want = BTreeMap::new();
    if align != 32 {
        w.set("general.alignment", Val::U32(align as u32));
        want.insert("general.alignment".into(), Value::U32(align as u32));
    }
    for (i, (v, r)) in scalars().into_iter().enumerate() {
        w.set(&format!("scalar.{i}"), v.clone());
        want.insert(format!("scalar.{i}"), r.clone());
        // An array of three of each type, and an empty one.
        w.set(&format!("array.{i}"), Val::Arr(v.ty(), vec![v.clone(); 3]));
        want.insert(format!("array.{i}"), Value::Array(vec![r; 3]));
        w.set(&format!("empty.{i}"), Val::Arr(v.ty(), vec![]));
        want.insert(format!("empty.{i}"), Value::Array(vec![]));
    }
    // Arrays nested two deep (the most allowed), of mixed element types.
    w.set(
        "nested",
        Val::Arr(
            9,
            vec![
                Val::Arr(0, vec![Val::U8(1), Val::U8(2)]),
                Val::Arr(8, vec![Val::str("x")]),
                Val::Arr(9, vec![]),
            ],
        ),
    );
    want.insert(
        "nested".into(),
        Value::Array(vec![
            Value::Array(vec![Value::U8(1), Value::U8(2)]),
            Value::Array(vec![Value::Str("x".into())]),
            Value::Array(vec![]),
        ]),
    );

    let mut tensors = Vec::new();
    // F32, rank 2.
    let v = [1.5f32, -2.25, 0.0, 3.0e-5, f32::MAX, -1e-40];
    w.tensors.push(Tensor::f32("t.f32", &[3, 2], &v));
    tensors.push(("t.f32", vec![3, 2], GgmlType::F32, v.to_vec()));
    // F16: 1, -2, 0.5, 65504 (largest), 2^-24 (smallest subnormal), -0.
    let bits = [0x3c00u16, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000];
    let data = bits.iter().flat_map(|&b| le16(b)).collect();
    w.tensors.push(Tensor::new("t.f16", &[6], F16, data));
    let v = vec![1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24), -0.0];
    tensors.push(("t.f16", vec![6], GgmlType::F16, v));
    // Q8_0, two blocks: d = 0.25 with q = j − 16, d = −0.5 with q = 8j − 128.
    let mut data = le16(0x3400).to_vec(); // 0.25
    data.extend((0..32).map(|j| (j as i8 - 16) as u8));
    data.extend(le16(0xb800)); // -0.5
    data.extend((0..32i32).map(|j| (8 * j - 128) as i8 as u8));
    w.tensors.push(Tensor::new("t.q8_0", &[32, 2], Q8_0, data));
    let mut v: Vec<f32> = (0..32).map(|j| 0.25 * (j as f32 - 16.0)).collect();
    v.extend((0..32).map(|j| -0.5 * (8.0 * j as f32 - 128.0)));
    tensors.push(("t.q8_0", vec![32, 2], GgmlType::Q8_0, v));
    // Q4_0, two blocks; byte j = (low nibble a_j, high nibble b_j): element j is
    // d·(a_j − 8), element j + 16 is d·(b_j − 8).
    let mut data = le16(0x4000).to_vec(); // 2.0
    data.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    data.extend(le16(0x3000)); // 0.125
    data.extend((0..16u8).map(|j| ((j * 5) % 16) | (((j * 3) % 16) << 4)));
    w.tensors.push(Tensor::new("t.q4_0", &[64], Q4_0, data));
    let mut v = vec![0.0f32; 64];
    for j in 0..16 {
        v[j] = 2.0 * (j as f32 - 8.0);
        v[j + 16] = 2.0 * ((15 - j) as f32 - 8.0);
        v[32 + j] = 0.125 * (((j * 5) % 16) as f32 - 8.0);
        v[48 + j] = 0.125 * (((j * 3) % 16) as f32 - 8.0);
    }
    tensors.push(("t.q4_0", vec![64], GgmlType::Q4_0, v));
    // Q4_1, rank 3, two blocks: d = 0.5, m = −1 then d = 0.25, m = 3; element j is
    // d·a_j + m, element j + 16 is d·b_j + m.
    let mut data = le16(0x3800).to_vec(); // d 0.5
    data.extend(le16(0xbc00)); // m -1.0
    data.extend((0..16u8).map(|j| ((j * 7) % 16) | ((j ^ 0x0a) << 4)));
    data.extend(le16(0x3400)); // d 0.25
    data.extend(le16(0x4200)); // m 3.0
    data.extend((0..16u8).map(|j| (15 - j) | (j << 4)));
    w.tensors
        .push(Tensor::new("t.q4_1", &[32, 1, 2], Q4_1, data));
    let mut v = vec![0.0f32; 64];
    for j in 0..16 {
        v[j] = 0.5 * ((j * 7) % 16) as f32 - 1.0;
        v[j + 16] = 0.5 * (j ^ 0x0a) as f32 - 1.0;
        v[32 + j] = 0.25 * (15 - j) as f32 + 3.0;
        v[48 + j] = 0.25 * j as f32 + 3.0;
    }
    tensors.push(("t.q4_1", vec![32, 1, 2], GgmlType::Q4_1, v));
    // Rank 4, one F32 element.
    w.tensors
        .push(Tensor::f32("t.rank4", &[1, 1, 1, 1], &[7.0]));
    tensors.push(("t.rank4", vec![1, 1, 1, 1], GgmlType::F32, vec![7.0]));
    (w, want, tensors)
}

#[test]
fn gguf_valid_file_round_trips() {
    for (version, align) in [(3, 32), (2, 32), (3, 1), (3, 64), (3, 1 << 16)] {
        let (w, want, tensors) = round_trip_file(version, align);
        let (bytes, lay) = w.build_layout();
        let g = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("v{version} align {align}: {e}"));
        assert_eq!(g.version, version);
        assert_eq!(g.metadata, want);
        assert_eq!(g.tensors.len(), tensors.len());
        for (i, (t, (name, dims, ty, vals))) in g.tensors.iter().zip(&tensors).enumerate() {
            assert_eq!(&t.name, name);
            assert_eq!(&t.dims, dims, "{name}");
            assert_eq!(t.ty, *ty, "{name}");
            assert_eq!(t.start, lay.data_start + lay.offsets[i] as usize, "{name}");
            assert_eq!(t.start % align as usize, 0, "{name}");
            assert_eq!(t.len, w.tensors[i].data.len(), "{name}");
            let got = dequantize(&bytes, t).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(vals), "{name}: {got:?}");
        }
    }
}

#[test]
fn gguf_metadata_accessors() {
    let (w, _, _) = round_trip_file(3, 32);
    let g = Gguf::parse(&w.build()).unwrap();
    assert_eq!(g.get_u64("scalar.0").unwrap(), 200);
    assert_eq!(g.get_u64("scalar.11").unwrap(), u64::MAX);
    // Negative integers and floats are not unsigned integers.
    assert!(g
        .get_u64("scalar.1")
        .unwrap_err()
        .to_string()
        .contains("unsigned"));
    assert!(g.get_u64("scalar.6").is_err());
    assert_eq!(g.get_str("scalar.9").unwrap(), "héllo ✓");
    assert!(g.get_str("scalar.0").is_err());
    assert!(g.get("absent").unwrap_err().to_string().contains("missing"));
    assert!(g
        .tensor("absent")
        .unwrap_err()
        .to_string()
        .contains("missing"));
    assert_eq!(g.tensor("t.q4_1").unwrap().numel(), 64);
}

// ---- 2. truncation at every byte -------------------------------------------------------

/// Every prefix of `bytes` is refused: a header error at or before the cut while the
/// header is incomplete, else the first tensor whose data the cut removes.
fn check_truncations(
    w: &synth::Gguf,
    bytes: &[u8],
    lay: &Layout,
    cuts: impl Iterator<Item = usize>,
) {
    let ends: Vec<usize> = w
        .tensors
        .iter()
        .zip(&lay.offsets)
        .map(|(t, &o)| lay.data_start + o as usize + t.data.len())
        .collect();
    assert_eq!(
        *ends.last().unwrap(),
        bytes.len(),
        "no padding after the last tensor"
    );
    Gguf::parse(bytes).expect("the whole file parses");
    for n in cuts {
        match Gguf::parse(&bytes[..n]) {
            Ok(_) => panic!("a file cut to {n} of {} bytes parsed", bytes.len()),
            Err(e @ LmError::Gguf { offset, .. }) => {
                assert!(n < lay.header_end, "cut {n}: {e}");
                assert!(offset <= n as u64, "cut {n}: {e}");
                assert!(e.to_string().contains(&format!("at byte {offset}")), "{e}");
            }
            Err(e @ LmError::Tensor { .. }) => {
                assert!(n >= lay.header_end, "cut {n}: {e}");
                let first = ends.iter().position(|&end| end > n).unwrap();
                let want = format!("tensor {:?}: data", w.tensors[first].name);
                assert!(e.to_string().starts_with(&want), "cut {n}: {e}");
                assert!(e.to_string().contains("runs past the end"), "cut {n}: {e}");
            }
            Err(e) => panic!("cut {n}: unexpected error {e}"),
        }
    }
}

#[test]
fn gguf_truncation_at_every_byte_is_an_error() {
    let (w, _, _) = round_trip_file(3, 32);
    let (bytes, lay) = w.build_layout();
    check_truncations(&w, &bytes, &lay, 0..bytes.len());
    // The llama file: every byte of the header and the padding, every 7th of the data.
    let w = synth::llama();
    let (bytes, lay) = w.build_layout();
    let cuts = (0..lay.data_start + 64).chain((lay.data_start..bytes.len()).step_by(7));
    check_truncations(&w, &bytes, &lay, cuts);
}

// ---- 3. hostile headers ----------------------------------------------------------------

#[test]
fn gguf_hostile_magic_and_version() {
    header_error(b"", 0, "magic: needs 4 bytes, 0 left");
    header_error(b"GGU", 0, "magic: needs 4 bytes, 3 left");
    let mut b = header(3, 0, 0);
    b[..4].copy_from_slice(b"GGML");
    header_error(&b, 0, "not a GGUF file");
    for v in [0, 1, 4, u32::MAX] {
        header_error(
            &header(v, 0, 0),
            8,
            &format!("unsupported GGUF version {v} (2 or 3)"),
        );
    }
    // The smallest valid file: no tensors, no metadata.
    let g = Gguf::parse(&header(3, 0, 0)).unwrap();
    assert!(g.metadata.is_empty() && g.tensors.is_empty());
}

#[test]
fn gguf_hostile_counts() {
    let big = 1u64 << 40;
    header_error(&header(3, big, 0), 24, "1099511627776 tensors");
    header_error(&header(3, 0, big), 24, "1099511627776 metadata entries");
    header_error(&header(3, u64::MAX, u64::MAX), 24, "limits 65536 / 65536");
    header_error(&header(3, 65537, 0), 24, "65537 tensors");
    // At the limit the count is accepted, and the missing entries are the error.
    header_error(
        &header(3, 65536, 0),
        24,
        "tensor #0 name: needs 8 bytes, 0 left",
    );
    header_error(
        &header(3, 0, 65536),
        24,
        "metadata key #0: needs 8 bytes, 0 left",
    );
}

#[test]
fn gguf_hostile_strings() {
    // A key claiming 2^62 bytes.
    let mut b = header(3, 0, 1);
    b.extend((1u64 << 62).to_le_bytes());
    b.extend(b"abc");
    header_error(
        &b,
        32,
        "metadata key #0: string of 4611686018427387904 bytes (limit 16777216)",
    );
    // A key longer than the rest of the file (under the limit).
    let mut b = header(3, 0, 1);
    b.extend(1000u64.to_le_bytes());
    b.extend(b"abc");
    header_error(&b, 32, "metadata key #0: needs 1000 bytes, 3 left");
    // A string value claiming 2^62 bytes, and one of 16 MiB + 1.
    let raw = |n: u64| Val::Raw(8, n.to_le_bytes().to_vec());
    refused_with(
        &one_kv(raw(1 << 62)),
        "k: string of 4611686018427387904 bytes",
    );
    refused_with(
        &one_kv(raw((16 << 20) + 1)),
        "k: string of 16777217 bytes (limit",
    );
    // A tensor name claiming 2^62 bytes.
    let mut b = header(3, 1, 0);
    b.extend((1u64 << 62).to_le_bytes());
    header_error(
        &b,
        32,
        "tensor #0 name: string of 4611686018427387904 bytes",
    );
    // Invalid UTF-8 in a key (offset: where the key's bytes start), a value, a name.
    let w = synth::Gguf {
        kv: vec![(vec![0xff, 0xfe], Val::U8(0))],
        ..Default::default()
    };
    header_error(&w.build(), 32, "metadata key #0: not UTF-8");
    let bad = Val::Raw(8, [2u64.to_le_bytes().as_slice(), &[0xc3, 0x28]].concat());
    refused_with(&one_kv(bad), "k: not UTF-8");
    let mut b = header(3, 1, 0);
    b.extend(1u64.to_le_bytes());
    b.push(0x80);
    header_error(&b, 32, "tensor #0 name: not UTF-8");
}

#[test]
fn gguf_hostile_arrays() {
    let arr = |ety: u32, n: u64| {
        let mut b = ety.to_le_bytes().to_vec();
        b.extend(n.to_le_bytes());
        Val::Raw(9, b)
    };
    let t0 = std::time::Instant::now();
    // 2^60 elements of every element type, and the largest count: refused before any
    // allocation (the counting allocator sees under 64 KiB, and it is instant).
    for ety in 0..=12 {
        for n in [1u64 << 60, u64::MAX, 1 << 32] {
            refused_with(
                &one_kv(arr(ety, n)),
                &format!("k: array of {n} elements does not fit"),
            );
        }
    }
    assert!(
        t0.elapsed().as_secs() < 5,
        "hostile array counts took {:?}",
        t0.elapsed()
    );
    // One element more than the bytes left (4 bytes left, u32 elements).
    let mut b = 4u32.to_le_bytes().to_vec();
    b.extend(2u64.to_le_bytes());
    b.extend([0; 4]);
    refused_with(
        &one_kv(Val::Raw(9, b)),
        "k: array of 2 elements does not fit in the 4 bytes",
    );
    // Nested three deep.
    let deep = Val::Arr(9, vec![Val::Arr(9, vec![Val::Arr(4, vec![Val::U32(1)])])]);
    refused_with(&one_kv(deep), "k: arrays nested deeper than 2");
    // Unknown element type, unknown value type, bad bool bytes.
    refused_with(&one_kv(arr(13, 0)), "k: unknown array element type 13");
    refused_with(
        &one_kv(arr(u32::MAX, 1)),
        "unknown array element type 4294967295",
    );
    refused_with(
        &one_kv(Val::Raw(13, vec![0; 8])),
        "k: unknown value type 13",
    );
    refused_with(
        &one_kv(Val::Raw(u32::MAX, vec![])),
        "unknown value type 4294967295",
    );
    refused_with(&one_kv(Val::Raw(7, vec![2])), "k: bool byte 2");
    refused_with(&one_kv(Val::Raw(7, vec![0xff])), "k: bool byte 255");
    let bools = Val::Arr(7, vec![Val::Bool(true), Val::Raw(7, vec![2])]);
    refused_with(&one_kv(bools), "k: bool byte 2");
}

#[test]
fn gguf_hostile_keys_and_tensor_infos() {
    // Duplicate key.
    let w = synth::Gguf::default()
        .kv("a", Val::U8(1))
        .kv("a", Val::U8(2));
    refused_with(&w.build(), "duplicate metadata key \"a\"");
    // Duplicate tensor name.
    let w = synth::Gguf::default()
        .tensor(Tensor::f32("w", &[2], &[1.0, 2.0]))
        .tensor(Tensor::f32("w", &[2], &[1.0, 2.0]));
    tensor_error(&w.build(), "w", "declared twice");
    // Rank 0 and 5.
    refused_with(
        &one_tensor(Tensor::f32("w", &[], &[1.0])),
        "tensor \"w\": rank 0 (1..=4)",
    );
    let t = Tensor::f32("w", &[1, 1, 1, 1, 1], &[1.0]);
    refused_with(&one_tensor(t), "tensor \"w\": rank 5 (1..=4)");
    let mut b = header(3, 1, 0);
    synth::put_str(&mut b, b"w");
    b.extend(u32::MAX.to_le_bytes());
    header_error(&b, 37, "tensor \"w\": rank 4294967295");
    // Element counts that overflow u64, are zero, or pass 2^40.
    for dims in [
        vec![1u64 << 32, 1 << 32, 2],
        vec![u64::MAX, 2],
        vec![0, 4],
        vec![4, 1, 0],
        vec![1 << 21, 1 << 20],
    ] {
        let t = Tensor::f32("w", &dims, &[1.0]);
        tensor_error(&one_tensor(t), "w", "give no valid element count");
    }
    // Unsupported ggml types: Q4_K (12), the removed Q4_2/Q4_3 (4, 5), nonsense.
    for ty in [12, 4, 5, 6, 7, 9, 30, u32::MAX] {
        let t = Tensor::new("w", &[32], ty, vec![0; 32]);
        refused_with(
            &one_tensor(t),
            &format!("tensor \"w\": ggml type {ty} is not supported"),
        );
    }
    // Rows that are not whole blocks.
    let t = Tensor::new("w", &[48, 2], Q4_1, vec![0; 60]);
    tensor_error(
        &one_tensor(t),
        "w",
        "row length 48 is not a multiple of the Q4_1 block of 32",
    );
    let t = Tensor::new("w", &[16], Q8_0, vec![0; 34]);
    tensor_error(
        &one_tensor(t),
        "w",
        "row length 16 is not a multiple of the Q8_0 block",
    );
    let t = Tensor::new("w", &[33], Q4_0, vec![0; 36]);
    tensor_error(
        &one_tensor(t),
        "w",
        "row length 33 is not a multiple of the Q4_0 block",
    );
}

#[test]
fn gguf_hostile_offsets_and_alignment() {
    let t = || Tensor::new("w", &[32], Q4_1, q4_1_block());
    Gguf::parse(&one_tensor(t())).unwrap();
    // Past the end, far past it, and so far that offset + length overflows.
    for off in [32, 1 << 20, !31] {
        let mut x = t();
        x.offset = Some(off);
        tensor_error(
            &one_tensor(x),
            "w",
            "runs past the end of the file's 20 data bytes",
        );
    }
    // One byte of data missing.
    let mut b = one_tensor(t());
    b.pop();
    tensor_error(
        &b,
        "w",
        "data [0, +20) runs past the end of the file's 19 data bytes",
    );
    // Misaligned, for the default and for an explicit alignment.
    let mut x = t();
    x.offset = Some(4);
    tensor_error(&one_tensor(x), "w", "data offset 4 is not aligned to 32");
    let mut w = synth::Gguf {
        align: 64,
        ..Default::default()
    }
    .kv("general.alignment", Val::U32(64))
    .tensor(t())
    .tensor(t());
    w.tensors[1].name = "v".into();
    Gguf::parse(&w.build()).unwrap();
    w.tensors[1].offset = Some(32);
    tensor_error(&w.build(), "v", "data offset 32 is not aligned to 64");
    // Alignments that are not powers of two ≤ 65536, or not unsigned integers.
    for a in [
        Val::U32(3),
        Val::U32(0),
        Val::U32(96),
        Val::U64(1 << 17),
        Val::I32(-32),
        Val::F32(32.0),
        Val::str("32"),
    ] {
        let b = synth::Gguf::default().kv("general.alignment", a).build();
        refused_with(&b, "general.alignment");
        refused_with(&b, "is not a power of two ≤ 65536");
    }
}

#[test]
fn gguf_aliased_tensor_data_is_refused() {
    // Two tensors over the same bytes: each would be dequantized into its own buffer,
    // so aliasing lets a small file ask for any amount of memory.
    let t = |name: &str| Tensor::new(name, &[32], Q4_1, q4_1_block());
    let mut w = synth::Gguf::default().tensor(t("a")).tensor(t("b"));
    Gguf::parse(&w.build()).unwrap();
    w.tensors[1].offset = Some(0);
    tensor_error(&w.build(), "b", "overlaps tensor \"a\"");
    // A partial overlap, and a tensor inside another.
    let mut w = synth::Gguf::default()
        .tensor(Tensor::f32("a", &[16], &[0.0; 16]))
        .tensor(Tensor::f32("b", &[16], &[0.0; 16]));
    w.tensors[1].offset = Some(32);
    tensor_error(&w.build(), "b", "overlaps tensor \"a\"");
    w.tensors[0].dims = vec![8];
    w.tensors[0].offset = Some(32);
    w.tensors[1].offset = Some(0);
    Gguf::parse(&w.build()).unwrap_err();
    // In the model: block 1's tensors pointing at block 0's data.
    let mut w = synth::llama();
    let (_, lay) = w.build_layout();
    let offsets: BTreeMap<String, u64> = w
        .tensors
        .iter()
        .zip(&lay.offsets)
        .map(|(t, &o)| (t.name.clone(), o))
        .collect();
    for t in w
        .tensors
        .iter_mut()
        .filter(|t| t.name.starts_with("blk.1."))
    {
        t.offset = Some(offsets[&t.name.replace("blk.1.", "blk.0.")]);
    }
    let e = LoadedModel::from_bytes(&w.build(), None).err().unwrap();
    assert!(e.to_string().contains("overlaps tensor \"blk.0."), "{e}");
}

// ---- 4. mutated files never panic ------------------------------------------------------

/// The two base files: the round-trip file and the synthetic llama.
fn bases() -> &'static [synth::Gguf; 2] {
    static B: OnceLock<[synth::Gguf; 2]> = OnceLock::new();
    B.get_or_init(|| [round_trip_file(3, 32).0, synth::llama()])
}

fn pool(n: usize) -> &'static rayon::ThreadPool {
    static P: [OnceLock<rayon::ThreadPool>; 3] = [const { OnceLock::new() }; 3];
    P[n].get_or_init(|| havn_lm::linear::pool(n).expect("thread pool"))
}

/// A structure-aware edit, made before the file is written: what a file that parses
/// but lies about its model looks like.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the value of the n-th metadata entry.
    Kv {
        at: usize,
        v: Val,
    },
    /// Replace a token, a merge, or a token type.
    Token {
        at: usize,
        s: String,
    },
    Merge {
        at: usize,
        s: String,
    },
    TokenType {
        at: usize,
        ty: i32,
    },
    Template(String),
    /// Change a tensor's dims or type, drop it, or declare it twice.
    Dims {
        at: usize,
        dims: Vec<u64>,
    },
    Type {
        at: usize,
        ty: u32,
    },
    Drop {
        at: usize,
    },
    Dup {
        at: usize,
    },
}

fn scalar() -> impl Strategy<Value = Val> {
    let f = prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(0.0f32),
        Just(-1.0),
        Just(1e-30),
        any::<f32>()
    ];
    prop_oneof![
        (0u32..400).prop_map(Val::U32),
        any::<u32>().prop_map(Val::U32),
        any::<i32>().prop_map(Val::I32),
        any::<u64>().prop_map(Val::U64),
        f.prop_map(Val::F32),
        any::<f64>().prop_map(Val::F64),
        any::<bool>().prop_map(Val::Bool),
        "[a-z<|> _]{0,12}".prop_map(Val::Str),
        Just(Val::Arr(8, vec![])),
        Just(Val::Arr(4, vec![Val::U32(7)])),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let template = prop_oneof![
        Just(String::new()),
        Just("{{".to_string()),
        Just("{% if %}".to_string()),
        Just("{{ messages[7].content }}".to_string()),
        Just("{{ 1 / 0 }}".to_string()),
        Just("{{ raise_exception('no') }}".to_string()),
        Just("<|im_start|><|im_end|><|im_start|>".to_string()),
        Just("{% for m in messages %}{{ m.content }}{% endfor %}".to_string()),
        ".{0,24}",
    ];
    let token = prop_oneof![
        Just(String::new()),
        Just("<|im_start|>".to_string()),
        Just("a".to_string()),
        Just("Ġ".to_string()),
        ".{0,6}",
    ];
    let small = || 0..1000usize;
    prop_oneof![
        3 => (small(), scalar()).prop_map(|(at, v)| Edit::Kv { at, v }),
        2 => (small(), token.clone()).prop_map(|(at, s)| Edit::Token { at, s }),
        1 => (small(), token).prop_map(|(at, s)| Edit::Merge { at, s }),
        1 => (small(), -1..6i32).prop_map(|(at, ty)| Edit::TokenType { at, ty }),
        1 => template.prop_map(Edit::Template),
        1 => (small(), proptest::collection::vec(prop_oneof![0..70u64, Just(300), any::<u64>()], 0..4))
            .prop_map(|(at, dims)| Edit::Dims { at, dims }),
        1 => (small(), prop_oneof![Just(0u32), Just(1), Just(2), Just(3), Just(8), any::<u32>()])
            .prop_map(|(at, ty)| Edit::Type { at, ty }),
        1 => small().prop_map(|at| Edit::Drop { at }),
        1 => small().prop_map(|at| Edit::Dup { at }),
    ]
}

/// The elements of the array at `key`, if the file has one.
fn array_of<'a>(w: &'a mut synth::Gguf, key: &str) -> Option<&'a mut Vec<Val>> {
    w.kv.iter_mut().find_map(|(k, v)| match v {
        Val::Arr(_, items) if k == key.as_bytes() && !items.is_empty() => Some(items),
        _ => None,
    })
}

fn apply_edit(w: &mut synth::Gguf, e: &Edit) {
    let nt = w.tensors.len().max(1);
    match e {
        Edit::Kv { at, v } => {
            let n = w.kv.len();
            if n > 0 {
                w.kv[at % n].1 = v.clone();
            }
        }
        Edit::Token { at, s } => {
            if let Some(a) = array_of(w, "tokenizer.ggml.tokens") {
                let n = a.len();
                a[at % n] = Val::Str(s.clone());
            }
        }
        Edit::Merge { at, s } => {
            if let Some(a) = array_of(w, "tokenizer.ggml.merges") {
                let n = a.len();
                a[at % n] = Val::Str(s.clone());
            }
        }
        Edit::TokenType { at, ty } => {
            if let Some(a) = array_of(w, "tokenizer.ggml.token_type") {
                let n = a.len();
                a[at % n] = Val::I32(*ty);
            }
        }
        Edit::Template(t) => w.set("tokenizer.chat_template", Val::Str(t.clone())),
        Edit::Dims { at, dims } => {
            if let Some(t) = w.tensors.get_mut(at % nt) {
                t.dims.clone_from(dims);
            }
        }
        Edit::Type { at, ty } => {
            if let Some(t) = w.tensors.get_mut(at % nt) {
                t.ty = *ty;
            }
        }
        Edit::Drop { at } => {
            if !w.tensors.is_empty() {
                w.tensors.remove(at % nt);
            }
        }
        Edit::Dup { at } => {
            if let Some(t) = w.tensors.get(at % nt).cloned() {
                w.tensors.push(t);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite a byte.
    Set {
        at: u32,
        header: bool,
        byte: u8,
    },
    /// Add a small number to a little-endian u64 (lengths, counts, offsets, dims).
    Bump {
        at: u32,
        header: bool,
        by: i8,
    },
    /// Write a u64 (a count, length or offset) anywhere.
    Word {
        at: u32,
        header: bool,
        v: u64,
    },
    /// Cut the file.
    Truncate {
        at: u32,
    },
    /// Copy a range of the file over another place.
    Splice {
        from: u32,
        to: u32,
        len: u16,
        header: bool,
    },
    /// Insert or delete bytes.
    Insert {
        at: u32,
        header: bool,
        bytes: Vec<u8>,
    },
    Delete {
        at: u32,
        header: bool,
        len: u8,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        8 => (any::<u32>(), any::<bool>(), any::<u8>()).prop_map(|(at, header, byte)| Mutation::Set { at, header, byte }),
        3 => (any::<u32>(), any::<bool>(), any::<i8>()).prop_map(|(at, header, by)| Mutation::Bump { at, header, by }),
        1 => (any::<u32>(), any::<bool>(), prop_oneof![any::<u64>(), 0..64u64, Just(u64::MAX), Just(1 << 62)])
            .prop_map(|(at, header, v)| Mutation::Word { at, header, v }),
        1 => any::<u32>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<u32>(), any::<u32>(), any::<u16>(), any::<bool>())
            .prop_map(|(from, to, len, header)| Mutation::Splice { from, to, len, header }),
        1 => (any::<u32>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, header, bytes)| Mutation::Insert { at, header, bytes }),
        1 => (any::<u32>(), any::<bool>(), any::<u8>()).prop_map(|(at, header, len)| Mutation::Delete { at, header, len }),
    ]
}

fn apply(b: &mut Vec<u8>, header_end: usize, m: &Mutation) {
    if b.is_empty() {
        return;
    }
    let pos = |at: u32, header: bool| {
        let n = if header {
            header_end.min(b.len())
        } else {
            b.len()
        };
        at as usize % n.max(1)
    };
    match m {
        Mutation::Set { at, header, byte } => {
            let p = pos(*at, *header);
            b[p] = *byte;
        }
        Mutation::Bump { at, header, by } => {
            let p = pos(*at, *header).min(b.len().saturating_sub(8));
            if let Some(w) = b.get_mut(p..p + 8) {
                let v = u64::from_le_bytes(w.try_into().unwrap()).wrapping_add(*by as i64 as u64);
                w.copy_from_slice(&v.to_le_bytes());
            }
        }
        Mutation::Word { at, header, v } => {
            let p = pos(*at, *header).min(b.len().saturating_sub(8));
            if let Some(w) = b.get_mut(p..p + 8) {
                w.copy_from_slice(&v.to_le_bytes());
            }
        }
        Mutation::Truncate { at } => b.truncate(*at as usize % (b.len() + 1)),
        Mutation::Splice {
            from,
            to,
            len,
            header,
        } => {
            let f = *from as usize % b.len();
            let t = pos(*to, *header);
            let n = (*len as usize).min(b.len() - f).min(b.len() - t);
            let src = b[f..f + n].to_vec();
            b[t..t + n].copy_from_slice(&src);
        }
        Mutation::Insert { at, header, bytes } => {
            let p = pos(*at, *header);
            b.splice(p..p, bytes.iter().copied());
        }
        Mutation::Delete { at, header, len } => {
            let p = pos(*at, *header);
            let end = (p + *len as usize).min(b.len());
            b.drain(p..end);
        }
    }
}

/// How far mutated files got.
#[derive(Default, Debug)]
struct Reached {
    parsed: AtomicUsize,
    config: AtomicUsize,
    tokenizer: AtomicUsize,
    loaded: AtomicUsize,
    chatted: AtomicUsize,
}

fn bump(c: &AtomicUsize, ok: bool) {
    if ok {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a node does with a model file it was handed, none of which may panic.
fn exercise(bytes: &[u8], reached: &Reached) {
    let (r, alloc) = allocated_by(|| Gguf::parse(bytes));
    // Metadata values are held as enum values (32 bytes) of at least one byte each.
    assert!(
        alloc <= 40 * bytes.len() as u64 + (1 << 20),
        "parsing {} bytes allocated {alloc}",
        bytes.len()
    );
    let Ok(g) = r else { return };
    bump(&reached.parsed, true);
    bump(&reached.config, Config::from_gguf(&g).is_ok());
    bump(&reached.tokenizer, ChatTokenizer::from_gguf(&g).is_ok());
    for t in &g.tensors {
        let _ = dequantize(bytes, t);
    }
    let (m, alloc) = allocated_by(|| LoadedModel::from_bytes(bytes, None));
    assert!(
        alloc <= 64 * bytes.len() as u64 + (64 << 20),
        "loading {} bytes allocated {alloc}",
        bytes.len()
    );
    let Ok(m) = m else { return };
    bump(&reached.loaded, true);
    let req =
        ChatRequest::from_json(br#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#)
            .unwrap();
    let opts = RunOpts {
        seed: 1,
        pool: pool(1),
        keep_traces: false,
        cancel: None,
    };
    bump(&reached.chatted, m.chat(&req, &opts).is_ok());
}

#[test]
fn gguf_mutated_files_never_panic() {
    // A panic anywhere fails the case; proptest then shrinks it to the fewest mutations.
    // 256 cases (PROPTEST_CASES=… for a longer hunt).
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let cases = config.cases as usize;
    let mut runner = TestRunner::new(config);
    let reached = Reached::default();
    let strategy = (
        0..2usize,
        proptest::collection::vec(edit(), 0..3),
        proptest::collection::vec(mutation(), 0..3),
    );
    let r = runner.run(&strategy, |(base, edits, muts)| {
        let mut w = bases()[base].clone();
        for e in &edits {
            apply_edit(&mut w, e);
        }
        let (mut b, lay) = w.build_layout();
        for m in &muts {
            apply(&mut b, lay.header_end, m);
        }
        exercise(&b, &reached);
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    eprintln!("mutated files: {reached:?}");
    // The mutations must not all be refused at the door: enough files get through each
    // stage for the later stages to be exercised too.
    let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    assert!(n(&reached.parsed) >= cases / 6, "{reached:?}");
    assert!(n(&reached.tokenizer) >= cases / 12, "{reached:?}");
    assert!(n(&reached.loaded) >= cases / 12, "{reached:?}");
    assert!(n(&reached.chatted) >= cases / 25, "{reached:?}");
}

#[test]
fn gguf_unmutated_bases_load() {
    // The base files themselves go all the way (the proptest starts from them).
    let (a, b) = (bases()[0].build(), bases()[1].build());
    assert!(Gguf::parse(&a).is_ok());
    LoadedModel::from_bytes(&b, None).unwrap();
    let reached = Reached::default();
    exercise(&a, &reached);
    exercise(&b, &reached);
    assert_eq!(reached.parsed.load(Ordering::Relaxed), 2);
    assert_eq!(reached.chatted.load(Ordering::Relaxed), 1);
}

// ---- 5. a synthetic llama --------------------------------------------------------------

fn chat(m: &LoadedModel, threads: usize) -> havn_lm::ChatOutput {
    let req =
        ChatRequest::from_json(br#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4}"#)
            .unwrap();
    m.chat(
        &req,
        &RunOpts {
            seed: 0,
            pool: pool(threads),
            keep_traces: false,
            cancel: None,
        },
    )
    .unwrap()
}

#[test]
fn gguf_synthetic_llama_loads_and_chats() {
    let bytes = synth::llama().build();
    let m = LoadedModel::from_bytes(&bytes, None).unwrap();
    assert_eq!(m.name, "synth");
    let c = m.model.cfg;
    assert_eq!(
        (c.layers, c.d, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab, c.context),
        (2, 32, 2, 1, 16, 64, 300, 96)
    );
    assert_eq!((m.tokenizer.vocab, m.tokenizer.eos), (300, synth::IM_END));
    // The ChatML prompt: control tokens whole, "user" and "Hi" merged, "assistant" as
    // ass·is·ta·nt by merge rank, "\n" the byte token 10.
    let (s, e) = (synth::IM_START, synth::IM_END);
    let want = [s, 258, 10, 264, e, 10, s, 260, 261, 262, 263, 10];
    let one = chat(&m, 1);
    assert_eq!(one.prompt_ids, want);
    assert_eq!(m.tokenizer.decode(&want).unwrap(), "user\nHi\nassistant\n");
    assert!(
        !one.token_ids.is_empty() && one.token_ids.len() <= 4,
        "{one:?}"
    );
    assert!(one.first_logits.len() == 300 && one.first_logits.iter().all(|x| x.is_finite()));
    // The same tokens, logits and commitment at 2 threads.
    let two = chat(&m, 2);
    assert_eq!(one.token_ids, two.token_ids);
    assert_eq!(one.merkle_root, two.merkle_root);
    assert_eq!(one.runtime_hash, two.runtime_hash);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one.first_logits), bits(&two.first_logits));
    // A separate output head loads too, and changes the logits.
    let mut w = synth::llama();
    let mut p = synth::Pattern(99);
    let head = synth::weights(Q8_0, synth::D * synth::VOCAB, &mut p, 1.0);
    w.tensors
        .push(Tensor::new("output.weight", &[32, 300], Q8_0, head));
    let m2 = LoadedModel::from_bytes(&w.build(), None).unwrap();
    assert_ne!(bits(&chat(&m2, 1).first_logits), bits(&one.first_logits));
}

/// Loading `w` fails with an error containing every one of `want`.
#[track_caller]
fn model_refused(w: &synth::Gguf, want: &[&str]) {
    let t0 = std::time::Instant::now();
    let e = match LoadedModel::from_bytes(&w.build(), None) {
        Ok(_) => panic!("a hostile model loaded (wanted {want:?})"),
        Err(e) => e.to_string(),
    };
    for s in want {
        assert!(e.contains(s), "{e} (wanted {s:?})");
    }
    assert!(t0.elapsed().as_secs() < 5, "{e}: took {:?}", t0.elapsed());
}

#[test]
fn gguf_hostile_llama_variants_are_refused() {
    // Non-finite weights of every encoding, on both load paths: an F32 NaN, an F16
    // infinity, a NaN Q4_1 minimum (dequantized: block 0's gate/up are Q8_0 + Q4_1),
    // an infinite F32 norm; an infinite Q8_0 scale (token_embd, kept quantized) and a
    // NaN Q4_1 scale (block 1's gate/up, kept quantized).
    let mut w = synth::llama();
    w.t("blk.1.attn_q.weight").data[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    model_refused(
        &w,
        &["tensor \"blk.1.attn_q.weight\"", "element 5 is not finite"],
    );
    let mut w = synth::llama();
    w.t("blk.0.attn_output.weight").data[6..8].copy_from_slice(&le16(0x7c00));
    model_refused(&w, &["blk.0.attn_output.weight", "element 3 is not finite"]);
    let mut w = synth::llama();
    w.t("blk.0.ffn_up.weight").data[22..24].copy_from_slice(&le16(0x7e00));
    model_refused(&w, &["blk.0.ffn_up.weight", "element 32 is not finite"]);
    let mut w = synth::llama();
    let norm = w.t("output_norm.weight");
    norm.data[124..128].copy_from_slice(&f32::INFINITY.to_le_bytes());
    model_refused(&w, &["output_norm.weight", "element 31 is not finite"]);
    let mut w = synth::llama();
    w.t("token_embd.weight").data[34..36].copy_from_slice(&le16(0x7c00));
    model_refused(&w, &["token_embd.weight", "not finite"]);
    let mut w = synth::llama();
    w.t("blk.1.ffn_up.weight").data[0..2].copy_from_slice(&le16(0x7e00));
    model_refused(&w, &["blk.1.ffn_", "not finite"]);
    let mut w = synth::llama();
    w.t("blk.0.attn_v.weight").data[40..42].copy_from_slice(&le16(0xfc00));
    model_refused(&w, &["blk.0.attn_", "not finite"]);

    // Wrong shapes: K as wide as Q, FFN down transposed, a rank-2 norm, a wrong head.
    let mut w = synth::llama();
    let t = w.t("blk.0.attn_k.weight");
    t.dims = vec![32, 32];
    t.data = synth::weights(Q4_1, 32 * 32, &mut synth::Pattern(1), 0.25);
    model_refused(
        &w,
        &["blk.0.attn_k.weight", "dims [32, 32], expected [32, 16]"],
    );
    let mut w = synth::llama();
    w.t("blk.1.ffn_down.weight").dims = vec![32, 64];
    model_refused(
        &w,
        &["blk.1.ffn_down.weight", "dims [32, 64], expected [64, 32]"],
    );
    let mut w = synth::llama();
    w.t("blk.0.ffn_norm.weight").dims = vec![32, 1];
    model_refused(
        &w,
        &["blk.0.ffn_norm.weight", "dims [32, 1], expected [32]"],
    );
    let mut w = synth::llama();
    let head = synth::weights(F32, 32 * 299, &mut synth::Pattern(1), 1.0);
    w.tensors
        .push(Tensor::new("output.weight", &[32, 299], F32, head));
    model_refused(&w, &["output.weight", "expected [32, 300]"]);

    // Missing tensors.
    for name in [
        "blk.1.ffn_down.weight",
        "token_embd.weight",
        "output_norm.weight",
    ] {
        let mut w = synth::llama();
        w.tensors.retain(|t| t.name != name);
        model_refused(&w, &[&format!("tensor {name:?}: missing from the file")]);
    }

    // Heads that do not divide d (3), KV heads that do not divide the heads (3 of 2),
    // odd head dims (32 heads of 1), and out-of-range counts.
    for (k, v) in [
        ("llama.attention.head_count", 3),
        ("llama.attention.head_count_kv", 3),
        ("llama.attention.head_count", 32),
    ] {
        let mut w = synth::llama();
        w.set(k, Val::U32(v));
        model_refused(&w, &["do not divide d 32 into even head dims"]);
    }
    for (k, v, want) in [
        ("llama.block_count", 0, "0 is outside 1..=256"),
        ("llama.block_count", 1000, "1000 is outside 1..=256"),
        ("llama.attention.head_count", 0, "0 is outside 1..=256"),
        ("llama.embedding_length", 1 << 20, "outside 1..=16384"),
        ("llama.context_length", 0, "0 is outside"),
    ] {
        let mut w = synth::llama();
        w.set(k, Val::U64(v));
        model_refused(&w, &[k, want]);
    }
    let mut w = synth::llama();
    w.set("llama.block_count", Val::U32(3));
    model_refused(&w, &["tensor \"blk.2.", "missing from the file"]);
    let mut w = synth::llama();
    w.set("llama.rope.freq_base", Val::F32(f32::NAN));
    model_refused(
        &w,
        &["llama.rope.freq_base", "expected a positive finite float"],
    );
    let mut w = synth::llama();
    w.set("llama.attention.layer_norm_rms_epsilon", Val::F32(-1e-5));
    model_refused(&w, &["layer_norm_rms_epsilon", "positive finite float"]);
    let mut w = synth::llama();
    w.unset("llama.feed_forward_length");
    model_refused(&w, &["\"llama.feed_forward_length\": missing"]);
    let mut w = synth::llama();
    w.set("general.architecture", Val::str("gpt2"));
    model_refused(&w, &["\"gpt2\" is not supported"]);

    // Vocabulary mismatches: 300 tokens over a 299-row embedding; a declared vocabulary
    // size the embedding does not have.
    let mut w = synth::llama();
    let t = w.t("token_embd.weight");
    t.dims = vec![32, 299];
    t.data.truncate(299 * 34);
    model_refused(&w, &["300 tokens, but the model has a vocabulary of 299"]);
    let mut w = synth::llama();
    w.set("llama.vocab_size", Val::U32(301));
    model_refused(&w, &["300 tokens, but the model has a vocabulary of 301"]);

    // eos outside the vocabulary, or not an integer.
    let mut w = synth::llama();
    w.set("tokenizer.ggml.eos_token_id", Val::U32(300));
    model_refused(
        &w,
        &["eos_token_id", "300 is outside the 300-token vocabulary"],
    );
    let mut w = synth::llama();
    w.set("tokenizer.ggml.eos_token_id", Val::I32(-1));
    model_refused(&w, &["eos_token_id", "expected an unsigned integer"]);

    // Tokenizers we do not build, and broken ones.
    let mut w = synth::llama();
    w.set("tokenizer.ggml.model", Val::str("llama"));
    model_refused(&w, &["\"llama\" is not supported"]);
    let mut w = synth::llama();
    w.set("tokenizer.ggml.tokens", Val::Arr(8, vec![]));
    model_refused(&w, &["tokenizer.ggml.tokens", "0 tokens"]);
    let mut w = synth::llama();
    w.set("tokenizer.ggml.tokens", Val::Arr(4, vec![Val::U32(1)]));
    model_refused(
        &w,
        &["tokenizer.ggml.tokens", "expected an array of strings"],
    );
    let mut w = synth::llama();
    w.set("tokenizer.ggml.merges", Val::strs(&["q z"]));
    model_refused(&w, &["tokenizer: building the BPE"]);
    let mut w = synth::llama();
    w.unset("tokenizer.chat_template");
    model_refused(&w, &["tokenizer.chat_template", "missing"]);
}
