//! A tiny GGUF writer for the tests: valid files by default (header, metadata of every
//! value type, tensor infos, data aligned as the format says), with hooks to make them
//! hostile (raw counts, raw value bodies, raw keys, forced offsets). Also a synthetic
//! llama model small enough to build, load and run in milliseconds.

use half::f16;

/// ggml type ids.
pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q8_0: u32 = 8;

/// A metadata value as written.
#[derive(Debug, Clone)]
pub enum Val {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type id and elements (each written as a body of that type).
    Arr(u32, Vec<Val>),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Any type id followed by any body bytes.
    Raw(u32, Vec<u8>),
}

impl Val {
    pub fn str(s: &str) -> Val {
        Val::Str(s.into())
    }
    pub fn strs<S: AsRef<str>>(v: &[S]) -> Val {
        Val::Arr(8, v.iter().map(|s| Val::Str(s.as_ref().into())).collect())
    }

    /// The GGUF value type id.
    pub fn ty(&self) -> u32 {
        match self {
            Val::U8(_) => 0,
            Val::I8(_) => 1,
            Val::U16(_) => 2,
            Val::I16(_) => 3,
            Val::U32(_) => 4,
            Val::I32(_) => 5,
            Val::F32(_) => 6,
            Val::Bool(_) => 7,
            Val::Str(_) => 8,
            Val::Arr(..) => 9,
            Val::U64(_) => 10,
            Val::I64(_) => 11,
            Val::F64(_) => 12,
            Val::Raw(t, _) => *t,
        }
    }

    /// The value's body (what follows its type id).
    pub fn body(&self, out: &mut Vec<u8>) {
        match self {
            Val::U8(v) => out.push(*v),
            Val::I8(v) => out.extend(v.to_le_bytes()),
            Val::U16(v) => out.extend(v.to_le_bytes()),
            Val::I16(v) => out.extend(v.to_le_bytes()),
            Val::U32(v) => out.extend(v.to_le_bytes()),
            Val::I32(v) => out.extend(v.to_le_bytes()),
            Val::F32(v) => out.extend(v.to_le_bytes()),
            Val::Bool(v) => out.push(u8::from(*v)),
            Val::Str(s) => put_str(out, s.as_bytes()),
            Val::Arr(ety, items) => {
                out.extend(ety.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for i in items {
                    i.body(out);
                }
            }
            Val::U64(v) => out.extend(v.to_le_bytes()),
            Val::I64(v) => out.extend(v.to_le_bytes()),
            Val::F64(v) => out.extend(v.to_le_bytes()),
            Val::Raw(_, b) => out.extend(b),
        }
    }
}

/// A length-prefixed (u64) string.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
}

/// One tensor as written.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
    /// Offset written instead of the laid-out one.
    pub offset: Option<u64>,
}

impl Tensor {
    pub fn new(name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Tensor {
        Tensor {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
            data,
            offset: None,
        }
    }
    pub fn f32(name: &str, dims: &[u64], v: &[f32]) -> Tensor {
        Tensor::new(
            name,
            dims,
            F32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
}

/// Where the parts of a written file lie.
#[derive(Debug, Clone)]
pub struct Layout {
    /// End of the tensor infos (the header).
    pub header_end: usize,
    /// Start of the data section.
    pub data_start: usize,
    /// Each tensor's data offset, relative to `data_start`.
    pub offsets: Vec<u64>,
}

/// A GGUF file to write.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub magic: [u8; 4],
    pub version: u32,
    /// Counts written instead of the real ones.
    pub n_tensors: Option<u64>,
    pub n_kv: Option<u64>,
    /// Keys as raw bytes (so they may be invalid UTF-8).
    pub kv: Vec<(Vec<u8>, Val)>,
    pub tensors: Vec<Tensor>,
    /// Alignment used to lay out the data (set `general.alignment` to match).
    pub align: u64,
}

impl Default for Gguf {
    fn default() -> Self {
        Gguf {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kv: Vec::new(),
            tensors: Vec::new(),
            align: 32,
        }
    }
}

impl Gguf {
    pub fn kv(mut self, key: &str, v: Val) -> Self {
        self.kv.push((key.as_bytes().to_vec(), v));
        self
    }
    pub fn tensor(mut self, t: Tensor) -> Self {
        self.tensors.push(t);
        self
    }
    /// Replaces (or adds) a metadata value.
    pub fn set(&mut self, key: &str, v: Val) {
        match self.kv.iter_mut().find(|(k, _)| k == key.as_bytes()) {
            Some(e) => e.1 = v,
            None => self.kv.push((key.as_bytes().to_vec(), v)),
        }
    }
    /// Removes a metadata value.
    pub fn unset(&mut self, key: &str) {
        self.kv.retain(|(k, _)| k != key.as_bytes());
    }
    /// A tensor by name.
    pub fn t(&mut self, name: &str) -> &mut Tensor {
        self.tensors
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_layout().0
    }

    /// The file and where its parts lie. No padding follows the last tensor.
    pub fn build_layout(&self) -> (Vec<u8>, Layout) {
        let mut out = Vec::new();
        out.extend(self.magic);
        out.extend(self.version.to_le_bytes());
        let nt = self.n_tensors.unwrap_or(self.tensors.len() as u64);
        let nkv = self.n_kv.unwrap_or(self.kv.len() as u64);
        out.extend(nt.to_le_bytes());
        out.extend(nkv.to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend(v.ty().to_le_bytes());
            v.body(&mut out);
        }
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            offsets.push(next);
            next = (next + t.data.len() as u64).div_ceil(self.align) * self.align;
        }
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, t.name.as_bytes());
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend(t.offset.unwrap_or(off).to_le_bytes());
        }
        let header_end = out.len();
        let data_start = (out.len() as u64).div_ceil(self.align) as usize * self.align as usize;
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            out.resize(data_start + off as usize, 0);
            out.extend(&t.data);
        }
        (
            out,
            Layout {
                header_end,
                data_start,
                offsets,
            },
        )
    }
}

/// f16 bits of `x` (exact for the values the tests use).
pub fn h(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

/// One Q8_0 block: f16 scale then 32 signed bytes.
pub fn q8_0(d: f32, q: &[i8; 32]) -> Vec<u8> {
    let mut b = h(d).to_vec();
    b.extend(q.iter().map(|&x| x as u8));
    b
}

/// One Q4_0 block: f16 scale then 16 bytes; `q[j]` (0..16) goes to the low nibble of
/// byte j for j < 16, the high nibble of byte j − 16 otherwise.
pub fn q4_0(d: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = h(d).to_vec();
    b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    b
}

/// One Q4_1 block: f16 scale, f16 minimum, then nibbles as in [`q4_0`].
pub fn q4_1(d: f32, m: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = h(d).to_vec();
    b.extend(h(m));
    b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    b
}

/// A fixed pseudo-random sequence (splitmix64).
pub struct Pattern(pub u64);

impl Pattern {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A value in [-1, 1) on a 1/1024 grid (exact in f16 and f32).
    pub fn unit(&mut self) -> f32 {
        (self.next() % 2048) as f32 / 1024.0 - 1.0
    }
}

/// `n` elements of ggml type `ty` (n a multiple of 32 for the block types), from `p`.
pub fn weights(ty: u32, n: usize, p: &mut Pattern, scale: f32) -> Vec<u8> {
    match ty {
        F32 => (0..n)
            .flat_map(|_| (p.unit() * scale).to_le_bytes())
            .collect(),
        F16 => (0..n).flat_map(|_| h(p.unit() * scale)).collect(),
        Q8_0 => (0..n / 32)
            .flat_map(|_| {
                let q: [i8; 32] = std::array::from_fn(|_| (p.next() % 255) as i8);
                q8_0(scale / 128.0, &q)
            })
            .collect(),
        Q4_0 => (0..n / 32)
            .flat_map(|_| {
                let q: [u8; 32] = std::array::from_fn(|_| (p.next() % 16) as u8);
                q4_0(scale / 8.0, &q)
            })
            .collect(),
        Q4_1 => (0..n / 32)
            .flat_map(|_| {
                let q: [u8; 32] = std::array::from_fn(|_| (p.next() % 16) as u8);
                q4_1(scale / 8.0, -scale, &q)
            })
            .collect(),
        t => panic!("no writer for ggml type {t}"),
    }
}

/// GPT-2's byte-level alphabet: the char that stands for each byte.
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).expect("byte-level char")
    }
}

/// The synthetic llama's shape.
pub const LAYERS: usize = 2;
pub const D: usize = 32;
pub const HEADS: usize = 2;
pub const KV_HEADS: usize = 1;
pub const FFN: usize = 64;
pub const CONTEXT: usize = 96;
/// Merges (in rank order) of the synthetic tokenizer, as pairs of byte-level strings.
pub const MERGES: [(&str, &str); 12] = [
    ("u", "s"),
    ("us", "e"),
    ("use", "r"),
    ("a", "s"),
    ("as", "s"),
    ("i", "s"),
    ("t", "a"),
    ("n", "t"),
    ("H", "i"),
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
];
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The synthetic vocabulary: 256 byte tokens (id = byte), the merge results, then
/// `<|im_start|>` and `<|im_end|>` (CONTROL), then filler tokens up to 300.
pub fn vocab() -> (Vec<String>, Vec<i32>) {
    let mut toks: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    toks.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    toks.push("<|im_start|>".into());
    toks.push("<|im_end|>".into());
    let mut types = vec![1; toks.len()];
    types[toks.len() - 2] = 3;
    types[toks.len() - 1] = 3;
    while toks.len() < 300 {
        toks.push(format!("<|filler_{}|>", toks.len()));
        types.push(4);
    }
    (toks, types)
}
pub const IM_START: u32 = 256 + MERGES.len() as u32;
pub const IM_END: u32 = IM_START + 1;
pub const VOCAB: usize = 300;

/// Types of each block's attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down:
/// every supported type, and both ways of loading a linear layer — kept quantized (all
/// its stacked tensors Q4_1, or all Q8_0) and dequantized to f32 (mixed or other types).
pub const LAYER_TYPES: [[u32; 7]; LAYERS] = [
    [Q4_1, Q4_1, Q4_1, F16, Q8_0, Q4_1, F32],
    [F32, Q4_1, Q4_0, Q8_0, Q4_1, Q4_1, Q4_0],
];

/// The synthetic llama (2 blocks, d 32, 2 heads / 1 KV head, FFN 64, 300 tokens), its
/// weights of the types of [`LAYER_TYPES`] from a fixed pattern; the output head is tied
/// (Q8_0, kept quantized).
pub fn llama() -> Gguf {
    let (toks, types) = vocab();
    let kvd = D / HEADS * KV_HEADS;
    let mut p = Pattern(7);
    let mut g = Gguf::default()
        .kv("general.architecture", Val::str("llama"))
        .kv("general.name", Val::str("synth"))
        .kv("general.alignment", Val::U32(32))
        .kv("llama.block_count", Val::U32(LAYERS as u32))
        .kv("llama.embedding_length", Val::U32(D as u32))
        .kv("llama.attention.head_count", Val::U32(HEADS as u32))
        .kv("llama.attention.head_count_kv", Val::U32(KV_HEADS as u32))
        .kv("llama.feed_forward_length", Val::U32(FFN as u32))
        .kv("llama.context_length", Val::U32(CONTEXT as u32))
        .kv("llama.rope.freq_base", Val::F32(10000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", Val::F32(1e-5))
        .kv("tokenizer.ggml.model", Val::str("gpt2"))
        .kv("tokenizer.ggml.tokens", Val::strs(&toks))
        .kv(
            "tokenizer.ggml.token_type",
            Val::Arr(5, types.iter().map(|&t| Val::I32(t)).collect()),
        )
        .kv(
            "tokenizer.ggml.merges",
            Val::strs(&MERGES.map(|(a, b)| format!("{a} {b}"))),
        )
        .kv("tokenizer.ggml.eos_token_id", Val::U32(IM_END))
        .kv("tokenizer.chat_template", Val::str(CHATML));
    let (d, f, v) = (D as u64, FFN as u64, VOCAB as u64);
    g = g.tensor(Tensor::new(
        "token_embd.weight",
        &[d, v],
        Q8_0,
        weights(Q8_0, D * VOCAB, &mut p, 1.0),
    ));
    for (l, ty) in LAYER_TYPES.iter().enumerate() {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        let norm: Vec<f32> = (0..D).map(|_| 1.0 + p.unit() / 8.0).collect();
        g = g.tensor(Tensor::f32(&n("attn_norm"), &[d], &norm));
        for (s, dims, ty) in [
            ("attn_q", [d, d], ty[0]),
            ("attn_k", [d, kvd as u64], ty[1]),
            ("attn_v", [d, kvd as u64], ty[2]),
            ("attn_output", [d, d], ty[3]),
        ] {
            let data = weights(ty, (dims[0] * dims[1]) as usize, &mut p, 0.25);
            g = g.tensor(Tensor::new(&n(s), &dims, ty, data));
        }
        let norm: Vec<f32> = (0..D).map(|_| 1.0 + p.unit() / 8.0).collect();
        g = g.tensor(Tensor::f32(&n("ffn_norm"), &[d], &norm));
        for (s, dims, ty) in [
            ("ffn_gate", [d, f], ty[4]),
            ("ffn_up", [d, f], ty[5]),
            ("ffn_down", [f, d], ty[6]),
        ] {
            let data = weights(ty, (dims[0] * dims[1]) as usize, &mut p, 0.25);
            g = g.tensor(Tensor::new(&n(s), &dims, ty, data));
        }
    }
    let norm: Vec<f32> = (0..D).map(|_| 1.0 + p.unit() / 8.0).collect();
    g.tensor(Tensor::f32("output_norm.weight", &[d], &norm))
}
