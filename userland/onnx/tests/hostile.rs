//! Hostile and unsupported ONNX files are refused with a clear error (no panic, no huge
//! allocation), and the small operators the UNet does not use compute what ONNX says.

use havn_exec::tensor::{save_safetensors, Tensor};
use havn_exec::{BackendKind, Executor, ManifestRegistry, RunOptions};
use havn_onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use havn_onnx::{import, OnnxError};
use prost::Message;
use std::collections::BTreeMap;

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| tensor_shape_proto_dim(d)).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor_shape_proto_dim(d: i64) -> havn_onnx::proto::tensor_shape_proto::Dimension {
    havn_onnx::proto::tensor_shape_proto::Dimension {
        value: Some(if d < 0 {
            dimension::Value::DimParam("batch".into())
        } else {
            dimension::Value::DimValue(d)
        }),
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outs.first().copied().unwrap_or(""))),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn f32_init(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn i64_init(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    ins: &[(&str, &[i64])],
    out: &str,
) -> Vec<u8> {
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: ins.iter().map(|(n, d)| value(n, d)).collect(),
            output: vec![value(out, &[])],
            name: Some("t".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn dims() -> BTreeMap<String, usize> {
    BTreeMap::from([("batch".to_owned(), 1)])
}

fn refused(bytes: &[u8]) -> String {
    match import(bytes, &dims()) {
        Ok(_) => panic!("a hostile model was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn garbage_and_truncated_files_are_refused() {
    let e = refused(b"this is not protobuf at all \xff\xff\xff\xff");
    assert!(
        e.contains("not an ONNX model") || e.contains("ONNX model"),
        "{e}"
    );
    assert!(refused(&[]).contains("opset"), "an empty file has no opset");
    if let Some(real) = crate::common::onnx_bytes() {
        for cut in [10, 1000, real.len() / 2, real.len() - 1] {
            let e = refused(&real[..cut]);
            assert!(
                e.contains("not an ONNX model") || e.contains("ONNX model"),
                "cut {cut}: {e}"
            );
        }
    }
}

#[test]
fn an_unsupported_operator_is_named() {
    let b = model(
        vec![node("LSTM", &["x"], &["y"], vec![])],
        vec![],
        &[("x", &[1, 4])],
        "y",
    );
    let e = refused(&b);
    assert!(e.contains("unsupported ONNX operator LSTM"), "{e}");
    let b = model(
        vec![node(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![int_attr("group", 2)],
        )],
        vec![f32_init("w", &[2, 1, 3, 3], &[0.5; 18])],
        &[("x", &[1, 2, 8, 8])],
        "y",
    );
    let e = refused(&b);
    assert!(e.contains("Conv") && e.contains("group 2"), "{e}");
}

#[test]
fn malformed_tensors_are_refused_before_allocating() {
    // Raw data shorter than the dims say.
    let mut t = f32_init("w", &[4], &[1.0, 2.0]);
    let b = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![t.clone()],
        &[("x", &[4])],
        "y",
    );
    assert!(
        refused(&b).contains("8 raw bytes for 4 f32"),
        "{}",
        refused(&b)
    );
    // Dims whose product is astronomically large: refused by arithmetic, not by OOM.
    t.dims = vec![1 << 40, 1 << 40];
    let b = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![t.clone()],
        &[("x", &[4])],
        "y",
    );
    assert!(refused(&b).contains("exceeds"), "{}", refused(&b));
    t.dims = vec![-3];
    let b = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![t.clone()],
        &[("x", &[4])],
        "y",
    );
    assert!(refused(&b).contains("negative dim"), "{}", refused(&b));
    // Unsupported dtype and external data.
    let mut d = f32_init("w", &[1], &[1.0]);
    d.data_type = Some(11);
    let b = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![d],
        &[("x", &[1])],
        "y",
    );
    assert!(refused(&b).contains("DOUBLE"), "{}", refused(&b));
    let mut d = f32_init("w", &[1], &[1.0]);
    d.data_location = Some(1);
    let b = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![d],
        &[("x", &[1])],
        "y",
    );
    assert!(refused(&b).contains("external data"), "{}", refused(&b));
    // A non-finite weight.
    let b = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![f32_init("w", &[1], &[f32::NAN])],
        &[("x", &[1])],
        "y",
    );
    assert!(refused(&b).contains("non-finite"), "{}", refused(&b));
}

#[test]
fn graph_level_errors_are_clear() {
    let ok_node = vec![node("Neg", &["x"], &["y"], vec![])];
    // Unbound symbolic dim.
    let b = model(ok_node.clone(), vec![], &[("x", &[-1, 4])], "y");
    let e = import(&b, &BTreeMap::new()).unwrap_err().to_string();
    assert!(e.contains("symbolic dim \"batch\" is not bound"), "{e}");
    // A reference to nothing.
    let b = model(
        vec![node("Neg", &["nope"], &["y"], vec![])],
        vec![],
        &[("x", &[4])],
        "y",
    );
    assert!(
        refused(&b).contains("\"nope\" is not defined"),
        "{}",
        refused(&b)
    );
    // Old opset, custom domain.
    let mut m =
        ModelProto::decode(model(ok_node.clone(), vec![], &[("x", &[4])], "y").as_slice()).unwrap();
    m.opset_import[0].version = Some(7);
    assert!(refused(&m.encode_to_vec()).contains("opset 7"));
    m.opset_import[0].version = Some(18);
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("com.microsoft".into()),
        version: Some(1),
    });
    assert!(refused(&m.encode_to_vec()).contains("com.microsoft"));
    // Too many nodes.
    let many = vec![node("Neg", &["x"], &["y"], vec![]); havn_onnx::import::MAX_NODES + 1];
    let b = model(many, vec![], &[("x", &[4])], "y");
    assert!(matches!(import(&b, &dims()), Err(OnnxError::Limit { .. })));
}

/// Imports a small graph and runs it on `x`, returning the output.
fn run(bytes: &[u8], x: Tensor) -> Vec<f32> {
    let g = import(bytes, &dims()).expect("imports");
    let bind = BTreeMap::from([("x".to_owned(), "x".to_owned())]);
    let (nodes, outs) = g.instantiate("", &bind).unwrap();
    let m = havn_exec::Manifest {
        name: "t".into(),
        class: havn_proto::ComputeClass::S,
        inputs: g.inputs.clone(),
        weights_cid: None,
        weights: vec![],
        nodes,
        outputs: outs.into_values().collect(),
    };
    assert!(
        g.weights.is_empty(),
        "the small graphs fold their constants"
    );
    let mut reg = ManifestRegistry::new();
    let inputs = save_safetensors(&[("x".into(), x)]).unwrap();
    let job = havn_exec::Job {
        checksum: reg.register(&m),
        manifest: m,
        weights: vec![],
        inputs_cid: havn_proto::Cid::of_bytes(&inputs),
        inputs,
        seed: 0,
    };
    let p = havn_exec::preflight(&reg, &job).unwrap();
    let r = Executor::with_backend(BackendKind::Cpu, 1)
        .unwrap()
        .execute(&p, &RunOptions::default())
        .unwrap();
    r.outputs[0].1.as_f32("y").unwrap().to_vec()
}

#[test]
fn folding_and_small_ops_compute_what_onnx_says() {
    // y = Exp(Neg(Reshape(x, Concat(Gather(Shape(x), [1]), [-1]... ))) with constants
    // folded at import: Shape → Gather → Cast → Concat drive a Reshape.
    let b = model(
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "one"], &["s1"], vec![]),
            node(
                "Concat",
                &["s1", "minus1"],
                &["target"],
                vec![int_attr("axis", 0)],
            ),
            node("Cast", &["target"], &["t64"], vec![int_attr("to", 7)]),
            node("Reshape", &["x", "t64"], &["r"], vec![]),
            node("Identity", &["r"], &["r2"], vec![]),
            node("Neg", &["r2"], &["n"], vec![]),
            node("Exp", &["n"], &["y"], vec![]),
        ],
        vec![i64_init("one", &[1]), i64_init("minus1", &[-1])],
        &[("x", &[2, 3])],
        "y",
    );
    let g = import(&b, &dims()).unwrap();
    assert_eq!(
        g.nodes.len(),
        3,
        "Shape/Gather/Concat/Cast fold, Identity aliases"
    );
    let xs = [0.0f32, 1.0, -1.0, 2.0, 0.5, -0.5];
    let y = run(&b, Tensor::f32(vec![2, 3], xs.to_vec()).unwrap());
    for (a, x) in y.iter().zip(xs) {
        assert!(
            (a - (-x).exp()).abs() <= 1e-6 * (-x).exp(),
            "{a} vs exp({})",
            -x
        );
    }
}
