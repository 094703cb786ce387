//! ONNX graph → havn-exec DAG. Graph inputs get fixed shapes (symbolic dims bound by
//! the caller); shape arithmetic is folded at import; each remaining operator maps to
//! one deterministic havn-exec op, or the import fails naming it. `Sigmoid` feeding only
//! `Mul(x, ·)` of its own input becomes `Silu`; nodes nothing reads are dropped.

use crate::consts::{self, Const, Data};
use crate::error::{OnnxError, Result};
use crate::proto::{attribute_proto::AttributeType, AttributeProto, ModelProto, NodeProto};
use havn_exec::manifest::{Node, TensorSpec};
use havn_exec::ops::{BinFn, Op, UnFn};
use havn_exec::tensor::{DType, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Largest file, node count and initializer count the importer accepts.
pub const MAX_FILE: usize = 1 << 30;
pub const MAX_NODES: usize = 100_000;
pub const MAX_INITIALIZERS: usize = 100_000;
/// Prefix of weight names in the DAG (shared by every instance of the graph).
pub const WEIGHT_PREFIX: &str = "onnx:";

/// An imported graph, instance-independent: node ids and references are local (see
/// [`Graph::instantiate`]); weights are global.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The ONNX graph inputs with their fixed shapes.
    pub inputs: Vec<TensorSpec>,
    /// ONNX output name → local id of the value.
    pub outputs: Vec<(String, String)>,
    pub nodes: Vec<Node>,
    /// Weight tensors (`onnx:` + initializer name), in first-use order.
    pub weights: Vec<(String, Tensor)>,
    /// Operators in the file.
    pub onnx_nodes: usize,
}

/// A value during import.
#[derive(Debug, Clone)]
enum Val {
    /// A DAG tensor (f32): its reference and shape.
    Dag {
        r: String,
        shape: Vec<usize>,
    },
    Const(Const),
}

pub(crate) struct Importer {
    vals: HashMap<String, Val>,
    nodes: Vec<Node>,
    weights: Vec<(String, Tensor)>,
    weight_names: HashSet<String>,
    inputs: HashSet<String>,
    /// Shape of every DAG reference (inputs, weights, node outputs).
    shapes: HashMap<String, Vec<usize>>,
    /// Weight references by ONNX name.
    weight_ids: HashMap<String, String>,
    /// DAG ids taken so far (ONNX names mapped by [`ref_id`]).
    taken: HashSet<String>,
}

/// A DAG id for an ONNX name: the characters job and node ids allow
/// (`[A-Za-z0-9._:-]`, others become `_`), at most 56 of them (longer names keep 40 and a
/// hash), `-2`, `-3`… on a collision.
fn ref_id(name: &str, taken: &mut HashSet<String>) -> String {
    use sha3::{Digest, Sha3_256};
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        s.push('v');
    }
    if s.len() > 56 {
        let h = Sha3_256::digest(name.as_bytes());
        s = format!("{}-{}", &s[..40], &hex_of(&h)[..15]);
    }
    let mut id = s.clone();
    let mut k = 2;
    while !taken.insert(id.clone()) {
        id = format!("{s}-{k}");
        k += 1;
    }
    id
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}
pub(crate) fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}
pub(crate) fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}
pub(crate) fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}
pub(crate) fn attr_s(n: &NodeProto, name: &str, default: &str) -> String {
    attr(n, name)
        .and_then(|a| a.s.as_deref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_else(|| default.to_owned())
}

pub(crate) fn unsupported(n: &NodeProto, reason: impl Into<String>) -> OnnxError {
    OnnxError::Unsupported {
        op: n.op_type.clone().unwrap_or_default(),
        node: node_name(n),
        reason: reason.into(),
    }
}
pub(crate) fn node_err(n: &NodeProto, reason: impl Into<String>) -> OnnxError {
    OnnxError::Node {
        op: n.op_type.clone().unwrap_or_default(),
        node: node_name(n),
        reason: reason.into(),
    }
}
fn node_name(n: &NodeProto) -> String {
    n.name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| n.output.first().cloned())
        .unwrap_or_default()
}

impl Importer {
    fn get(&self, n: &NodeProto, i: usize) -> Result<&Val> {
        let name = n
            .input
            .get(i)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| node_err(n, format!("input {i} is missing")))?;
        self.vals
            .get(name)
            .ok_or_else(|| node_err(n, format!("input {name:?} is not defined before use")))
    }
    fn opt(&self, n: &NodeProto, i: usize) -> Result<Option<&Val>> {
        match n.input.get(i) {
            Some(s) if !s.is_empty() => self.get(n, i).map(Some),
            _ => Ok(None),
        }
    }
    fn konst(&self, n: &NodeProto, i: usize) -> Result<&Const> {
        match self.get(n, i)? {
            Val::Const(c) => Ok(c),
            Val::Dag { .. } => Err(unsupported(
                n,
                format!("input {i} must be a constant known at import"),
            )),
        }
    }
    /// The input as a DAG reference and shape (an f32 constant becomes a weight).
    fn dag(&mut self, n: &NodeProto, i: usize) -> Result<(String, Vec<usize>)> {
        let name = n.input.get(i).cloned().unwrap_or_default();
        match self.get(n, i)?.clone() {
            Val::Dag { r, shape } => Ok((r, shape)),
            Val::Const(c) => self
                .weight(&name, &c)
                .map_err(|e| node_err(n, e.to_string())),
        }
    }
    fn weight(&mut self, name: &str, c: &Const) -> Result<(String, Vec<usize>)> {
        if let Some(r) = self.weight_ids.get(name) {
            return Ok((r.clone(), c.dims.clone()));
        }
        let r = format!("{WEIGHT_PREFIX}{}", ref_id(name, &mut self.taken));
        self.weight_ids.insert(name.to_owned(), r.clone());
        if self.weight_names.insert(r.clone()) {
            let Data::F32(v) = &c.data else {
                return Err(OnnxError::Tensor {
                    name: name.into(),
                    reason: "an i64 constant cannot be a tensor operand".into(),
                });
            };
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(OnnxError::Tensor {
                    name: name.into(),
                    reason: format!("non-finite value at index {i}"),
                });
            }
            self.weights
                .push((r.clone(), Tensor::f32(c.dims.clone(), v.clone())?));
            self.shapes.insert(r.clone(), c.dims.clone());
        }
        Ok((r, c.dims.clone()))
    }
    fn emit(&mut self, n: &NodeProto, out: usize, op: Op, inputs: Vec<String>) -> Result<()> {
        let name = n
            .output
            .get(out)
            .cloned()
            .ok_or_else(|| node_err(n, format!("output {out} is missing")))?;
        let id = ref_id(&name, &mut self.taken);
        let specs: Vec<(DType, Vec<usize>)> = inputs
            .iter()
            .map(|r| self.shape_of(r).map(|s| (DType::F32, s)))
            .collect::<Result<_>>()?;
        let (_, shape) = op
            .infer(&id, &specs)
            .map_err(|e| node_err(n, e.to_string()))?;
        if self.weight_names.contains(&id) || self.inputs.contains(&id) {
            return Err(node_err(
                n,
                format!("output {id:?} shadows a weight or input"),
            ));
        }
        self.nodes.push(Node {
            id: id.clone(),
            op,
            inputs,
        });
        self.shapes.insert(id.clone(), shape.clone());
        self.vals.insert(name, Val::Dag { r: id, shape });
        Ok(())
    }
    fn shape_of(&self, r: &str) -> Result<Vec<usize>> {
        self.shapes
            .get(r)
            .cloned()
            .ok_or_else(|| OnnxError::Model(format!("internal: unknown reference {r:?}")))
    }
    fn set(&mut self, n: &NodeProto, out: usize, v: Val) -> Result<()> {
        let id = n
            .output
            .get(out)
            .cloned()
            .ok_or_else(|| node_err(n, format!("output {out} is missing")))?;
        self.vals.insert(id, v);
        Ok(())
    }
    fn all_const(&self, n: &NodeProto) -> bool {
        n.input
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| matches!(self.vals.get(s), Some(Val::Const(_))))
    }
}

/// Imports a model. `dims` binds symbolic input dims (e.g. `batch` → 1).
pub fn import(bytes: &[u8], dims: &BTreeMap<String, usize>) -> Result<Graph> {
    if bytes.len() > MAX_FILE {
        return Err(OnnxError::Limit {
            what: "file size".into(),
            value: bytes.len() as u64,
            max: MAX_FILE as u64,
        });
    }
    let model = <ModelProto as prost::Message>::decode(bytes)
        .map_err(|e| OnnxError::Decode(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty())
        .and_then(|o| o.version)
        .ok_or_else(|| OnnxError::Model("no default-domain opset_import".into()))?;
    if !(13..=23).contains(&opset) {
        return Err(OnnxError::Model(format!(
            "opset {opset} (supported: 13 to 23)"
        )));
    }
    if let Some(o) = model
        .opset_import
        .iter()
        .find(|o| !o.domain.as_deref().unwrap_or("").is_empty())
    {
        return Err(OnnxError::Model(format!(
            "operator domain {:?} is not supported",
            o.domain.as_deref().unwrap_or("")
        )));
    }
    let g = model
        .graph
        .ok_or_else(|| OnnxError::Model("the model has no graph".into()))?;
    for (what, n, max) in [
        ("nodes", g.node.len(), MAX_NODES),
        ("initializers", g.initializer.len(), MAX_INITIALIZERS),
    ] {
        if n > max {
            return Err(OnnxError::Limit {
                what: what.into(),
                value: n as u64,
                max: max as u64,
            });
        }
    }
    let mut im = Importer {
        vals: HashMap::new(),
        nodes: Vec::new(),
        weights: Vec::new(),
        weight_names: HashSet::new(),
        inputs: HashSet::new(),
        shapes: HashMap::new(),
        taken: HashSet::new(),
        weight_ids: HashMap::new(),
    };
    for t in &g.initializer {
        let name = t.name.clone().unwrap_or_default();
        im.vals.insert(name, Val::Const(Const::from_proto(t)?));
    }
    let mut inputs = Vec::new();
    for i in &g.input {
        let name = i.name.clone().unwrap_or_default();
        if im.vals.contains_key(&name) {
            continue;
        }
        let tt = i
            .r#type
            .as_ref()
            .and_then(|t| match &t.value {
                Some(crate::proto::type_proto::Value::TensorType(tt)) => Some(tt),
                _ => None,
            })
            .ok_or_else(|| OnnxError::Model(format!("input {name:?} is not a tensor")))?;
        if tt.elem_type != Some(1) {
            return Err(OnnxError::Model(format!(
                "input {name:?} has element type {:?} (only FLOAT)",
                tt.elem_type
            )));
        }
        let shape =
            tt.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(crate::proto::tensor_shape_proto::dimension::Value::DimValue(
                                v,
                            )) if *v > 0 => Ok(*v as usize),
                            Some(crate::proto::tensor_shape_proto::dimension::Value::DimParam(
                                p,
                            )) => dims.get(p).copied().ok_or_else(|| {
                                OnnxError::Model(format!(
                                    "input {name:?}: symbolic dim {p:?} is not bound"
                                ))
                            }),
                            _ => Err(OnnxError::Model(format!("input {name:?}: unknown dim"))),
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .ok_or_else(|| OnnxError::Model(format!("input {name:?} has no shape")))?;
        consts::checked_numel(&name, &shape)?;
        im.inputs.insert(name.clone());
        im.taken.insert(name.clone());
        im.shapes.insert(name.clone(), shape.clone());
        im.vals.insert(
            name.clone(),
            Val::Dag {
                r: name.clone(),
                shape: shape.clone(),
            },
        );
        inputs.push(TensorSpec {
            name,
            dtype: DType::F32,
            shape,
        });
    }
    for n in &g.node {
        if !n.domain.as_deref().unwrap_or("").is_empty() {
            return Err(unsupported(n, "custom operator domain"));
        }
        crate::ops::convert(&mut ImportCtx(&mut im), n)?;
    }
    let mut outputs = Vec::new();
    for o in &g.output {
        let name = o.name.clone().unwrap_or_default();
        match im.vals.get(&name) {
            Some(Val::Dag { r, .. }) => outputs.push((name, r.clone())),
            Some(Val::Const(_)) => {
                return Err(OnnxError::Model(format!("output {name:?} is a constant")))
            }
            None => {
                return Err(OnnxError::Model(format!(
                    "output {name:?} is never produced"
                )))
            }
        }
    }
    let (nodes, weights) = finish(im.nodes, im.weights, &outputs, &im.shapes);
    Ok(Graph {
        inputs,
        outputs,
        nodes,
        weights,
        onnx_nodes: g.node.len(),
    })
}

/// Fuses `Mul(x, Sigmoid(x))` into `Silu(x)`, the group-norm spelling into GroupNorm
/// (and a following SiLU into it), and drops nodes (and weights) nothing reads.
fn finish(
    mut nodes: Vec<Node>,
    mut weights: Vec<(String, Tensor)>,
    outputs: &[(String, String)],
    shapes: &HashMap<String, Vec<usize>>,
) -> (Vec<Node>, Vec<(String, Tensor)>) {
    let idx: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    for i in 0..nodes.len() {
        if nodes[i].op != (Op::Binary { f: BinFn::Mul }) {
            continue;
        }
        let ins = nodes[i].inputs.clone();
        for (x, s) in [(0, 1), (1, 0)] {
            let sig = idx.get(&ins[s]).map(|&j| &nodes[j]);
            if let Some(sn) = sig {
                if sn.op == (Op::Unary { f: UnFn::Sigmoid }) && sn.inputs == [ins[x].clone()] {
                    nodes[i].op = Op::Silu;
                    nodes[i].inputs = vec![ins[x].clone()];
                    break;
                }
            }
        }
    }
    crate::fuse::group_norm(&mut nodes, &mut weights, shapes);
    let mut live: HashSet<String> = outputs.iter().map(|(_, r)| r.clone()).collect();
    for n in nodes.iter().rev() {
        if live.contains(&n.id) {
            live.extend(n.inputs.iter().cloned());
        }
    }
    nodes.retain(|n| live.contains(&n.id));
    let weights = weights
        .into_iter()
        .filter(|(n, _)| live.contains(n))
        .collect();
    (nodes, weights)
}

/// The importer as the op converters see it.
pub struct ImportCtx<'a>(&'a mut Importer);

impl ImportCtx<'_> {
    /// Input `i` as a constant (refused when it is computed at run time).
    pub fn konst(&self, n: &NodeProto, i: usize) -> Result<Const> {
        self.0.konst(n, i).cloned()
    }
    /// Optional input `i` as a constant.
    pub fn opt_konst(&self, n: &NodeProto, i: usize) -> Result<Option<Const>> {
        match self.0.opt(n, i)? {
            None => Ok(None),
            Some(Val::Const(c)) => Ok(Some(c.clone())),
            Some(Val::Dag { .. }) => Err(unsupported(
                n,
                format!("input {i} must be a constant known at import"),
            )),
        }
    }
    /// Input `i` as a DAG reference and its shape.
    pub fn dag(&mut self, n: &NodeProto, i: usize) -> Result<(String, Vec<usize>)> {
        self.0.dag(n, i)
    }
    /// The shape of input `i`, whether constant or computed.
    pub fn shape(&self, n: &NodeProto, i: usize) -> Result<Vec<usize>> {
        Ok(match self.0.get(n, i)? {
            Val::Dag { shape, .. } => shape.clone(),
            Val::Const(c) => c.dims.clone(),
        })
    }
    /// True when every input is known at import.
    pub fn all_const(&self, n: &NodeProto) -> bool {
        self.0.all_const(n)
    }
    /// True when input `i` is computed at run time.
    pub fn is_dag(&self, n: &NodeProto, i: usize) -> Result<bool> {
        Ok(matches!(self.0.get(n, i)?, Val::Dag { .. }))
    }
    /// Binds output `out` to a constant.
    pub fn set_const(&mut self, n: &NodeProto, out: usize, c: Const) -> Result<()> {
        self.0.set(n, out, Val::Const(c))
    }
    /// Binds output `out` to an existing DAG value (an alias: no node).
    pub fn alias(&mut self, n: &NodeProto, out: usize, r: String, shape: Vec<usize>) -> Result<()> {
        self.0.set(n, out, Val::Dag { r, shape })
    }
    /// Emits a node for output `out`.
    pub fn emit(&mut self, n: &NodeProto, out: usize, op: Op, inputs: Vec<String>) -> Result<()> {
        self.0.emit(n, out, op, inputs)
    }
    /// Adds a derived weight (e.g. a transposed matrix) and returns its reference.
    pub fn weight(&mut self, name: &str, c: &Const) -> Result<String> {
        self.0.weight(name, c).map(|(r, _)| r)
    }
}

/// Attribute helpers for the op converters.
pub mod attrs {
    use super::*;
    pub(crate) use super::{attr_f, attr_i, attr_ints, attr_s, node_err, unsupported};
    /// A tensor-valued attribute (`Constant`'s `value`).
    pub fn tensor(n: &NodeProto, name: &str) -> Option<Result<Const>> {
        attr(n, name)
            .filter(|a| a.r#type == Some(AttributeType::Tensor as i32))
            .and_then(|a| a.t.as_ref())
            .map(Const::from_proto)
    }
    /// Names of the attributes a node carries.
    pub fn names(n: &NodeProto) -> Vec<String> {
        n.attribute.iter().filter_map(|a| a.name.clone()).collect()
    }
}
