//! A chat job's outputs: `outputs.safetensors` (token ids, prompt ids, UTF-8 text; no
//! metadata, so the bytes and their CID depend on the result alone) and a JSON view.

use crate::chat::ChatOutput;
use crate::error::{LmError, Result};
use havn_proto::Cid;
use safetensors::tensor::{Dtype, TensorView};

/// The bytes of `outputs.safetensors` for a result.
pub fn safetensors_bytes(out: &ChatOutput) -> Result<Vec<u8>> {
    let ids = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect() };
    let tok = ids(&out.token_ids);
    let prompt = ids(&out.prompt_ids);
    let text = out.text.as_bytes().to_vec();
    let bad = |e: safetensors::SafeTensorError| LmError::Store(format!("encoding outputs: {e}"));
    let views = vec![
        (
            "prompt_ids",
            TensorView::new(Dtype::I32, vec![out.prompt_ids.len()], &prompt).map_err(bad)?,
        ),
        (
            "text",
            TensorView::new(Dtype::U8, vec![text.len()], &text).map_err(bad)?,
        ),
        (
            "token_ids",
            TensorView::new(Dtype::I32, vec![out.token_ids.len()], &tok).map_err(bad)?,
        ),
    ];
    safetensors::serialize(views, None).map_err(bad)
}

/// Writes `outputs.safetensors` and `outputs.json` into `dir`; returns the outputs CID.
pub fn write(dir: &std::path::Path, out: &ChatOutput) -> Result<Cid> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LmError::io(format!("creating {}", dir.display()), e))?;
    let bytes = safetensors_bytes(out)?;
    let cid = Cid::of_bytes(&bytes);
    let p = dir.join("outputs.safetensors");
    std::fs::write(&p, &bytes).map_err(|e| LmError::io(format!("writing {}", p.display()), e))?;
    let view = serde_json::json!({
        "outputs_cid": cid.to_string(),
        "text": out.text,
        "token_ids": out.token_ids,
        "finish": out.finish,
    });
    let p = dir.join("outputs.json");
    std::fs::write(&p, format!("{view:#}\n"))
        .map_err(|e| LmError::io(format!("writing {}", p.display()), e))?;
    Ok(cid)
}

/// Reads back a chat job's `outputs.safetensors`: (generated token ids, text).
pub fn parse(bytes: &[u8]) -> Result<(Vec<u32>, String)> {
    let bad = |e: String| LmError::Store(format!("chat outputs: {e}"));
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let ids = st.tensor("token_ids").map_err(|e| bad(e.to_string()))?;
    if ids.dtype() != Dtype::I32 {
        return Err(bad("token_ids is not I32".into()));
    }
    let ids = ids
        .data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u32)
        .collect();
    let text = st.tensor("text").map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8(text.data().to_vec()).map_err(|e| bad(e.to_string()))?;
    Ok((ids, text))
}
