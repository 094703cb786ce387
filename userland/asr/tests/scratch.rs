use crate::common::{clips, whisper};
use std::time::Instant;
#[test]
fn scratch_timing() {
    let (Some(w), Some(clips)) = (whisper(), clips()) else {
        return;
    };
    let samples = havn_asr::wav::read_wav(&clips[0].wav).unwrap();
    let m = &w.model;
    let t = Instant::now();
    let mel = w.front.log_mel(&samples, 1);
    eprintln!("mel {:?}", t.elapsed());
    let t = Instant::now();
    let x = m.encoder_stem(&mel, 1).unwrap();
    eprintln!("stem {:?}", t.elapsed());
    let t = Instant::now();
    let _ = m.encoder_layer(0, &x, 1).unwrap();
    eprintln!("layer {:?}", t.elapsed());
    let a = vec![0.5f32; 1500 * 384];
    let b = vec![0.25f32; 384 * 1536];
    let t = Instant::now();
    let _ = havn_exec::cpu::matmul(&a, &b, None, 1500, 384, 1536, 1);
    eprintln!(
        "matmul 1500x384x1536 {:?} simd {}",
        t.elapsed(),
        havn_exec::cpu::simd_available()
    );
    let q = vec![0.5f32; 1500 * 64];
    let k = vec![0.5f32; 64 * 1500];
    let t = Instant::now();
    let _ = havn_exec::cpu::matmul(&q, &k, None, 1500, 64, 1500, 1);
    eprintln!("matmul 1500x64x1500 {:?}", t.elapsed());
    let p = vec![0.5f32; 1500 * 1500];
    let t = Instant::now();
    let _ = havn_exec::cpu::matmul(&p, &q, None, 1500, 1500, 64, 1);
    eprintln!("matmul 1500x1500x64 {:?}", t.elapsed());
    let mut g = vec![0.7f32; 1500 * 1536];
    let t = Instant::now();
    havn_asr::nn::gelu_in_place(&mut g, 1536, 1);
    eprintln!("gelu {:?}", t.elapsed());
    let mut s = vec![0.7f32; 1500 * 1500];
    let t = Instant::now();
    havn_asr::nn::softmax_rows(&mut s, 1500, 1);
    eprintln!("softmax {:?}", t.elapsed());

    let enc = m.encoder_out(&x, 1);
    let t = Instant::now();
    let cross = m.cross_kv(&enc, 1);
    eprintln!("cross {:?}", t.elapsed());
    let mut cache = havn_asr::model::SelfCache::new(4);
    let t = Instant::now();
    let o = m.decoder_step(50257, 0, &cache, &cross, false, 1).unwrap();
    eprintln!("step no logits {:?}", t.elapsed());
    cache.push(&o);
    let t = Instant::now();
    let _ = m.decoder_step(50362, 1, &cache, &cross, true, 1).unwrap();
    eprintln!("step logits {:?}", t.elapsed());
    let e = vec![0.5f32; 51864 * 384];
    let h = vec![0.5f32; 384];
    let t = Instant::now();
    let _ = havn_exec::cpu::matmul(&e, &h, None, 51864, 384, 1, 1);
    eprintln!("logits matmul {:?}", t.elapsed());
    let t = Instant::now();
    let _ = havn_exec::cpu::matmul(&h, &e, None, 1, 384, 51864, 1);
    eprintln!("logits matmul other orientation {:?}", t.elapsed());
}
