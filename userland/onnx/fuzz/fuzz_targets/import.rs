//! The ONNX importer on arbitrary bytes: it may refuse, never panic or allocate from an
//! unchecked count. Imported graphs must also build a plan (every node's contract holds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let dims = BTreeMap::from([("batch".to_owned(), 1usize)]);
    if let Ok(g) = havn_onnx::import(data, &dims) {
        let bind = g.inputs.iter().map(|i| (i.name.clone(), i.name.clone())).collect();
        let _ = g.instantiate("", &bind);
    }
});
