//! Graph fusions that cut the node count (every node output is hashed into the
//! commitment, so fewer, larger nodes are faster): the exporters' group-norm spelling
//! `Reshape → InstanceNormalization(1, 0) → Reshape → Mul(γ) → Add(β)` becomes one
//! GroupNorm, and a SiLU reading only a GroupNorm folds into it.

use havn_exec::manifest::Node;
use havn_exec::ops::{BinFn, Op};
use havn_exec::tensor::Tensor;
use std::collections::HashMap;

/// The operands of a commutative binary node, the one `is_x` accepts first.
fn split_operands(n: &Node, is_x: impl Fn(&str) -> bool) -> Option<(&str, &str)> {
    match n.inputs.as_slice() {
        [a, b] if is_x(a) => Some((a, b)),
        [a, b] if is_x(b) => Some((b, a)),
        _ => None,
    }
}

/// Rewrites each matching `Add` node into a GroupNorm (same id), then each SiLU of a
/// GroupNorm into a GroupNorm with `silu`; the bypassed nodes die in the caller's sweep.
pub fn group_norm(
    nodes: &mut [Node],
    weights: &mut Vec<(String, Tensor)>,
    shapes: &HashMap<String, Vec<usize>>,
) {
    let idx: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    let node_of = |id: &str, nodes: &[Node]| idx.get(id).map(|&i| nodes[i].clone());
    for i in 0..nodes.len() {
        if nodes[i].op != (Op::Binary { f: BinFn::Add }) {
            continue;
        }
        let found = (|| {
            let add = &nodes[i];
            let is_node = |s: &str| idx.contains_key(s);
            let (m, beta) = split_operands(add, is_node)?;
            let mul = node_of(m, nodes)?;
            if mul.op != (Op::Binary { f: BinFn::Mul }) {
                return None;
            }
            let (r2, gamma) = split_operands(&mul, is_node)?;
            let r2n = node_of(r2, nodes)?;
            let inn = node_of(r2n.inputs.first()?, nodes)?;
            let Op::InstanceNorm { eps } = inn.op else {
                return None;
            };
            let r1n = node_of(inn.inputs.first()?, nodes)?;
            if !matches!(r2n.op, Op::Reshape { .. }) || !matches!(r1n.op, Op::Reshape { .. }) {
                return None;
            }
            let x = r1n.inputs.first()?.clone();
            let xs = shapes.get(&x)?;
            let gs = shapes.get(&inn.id)?;
            if xs.len() < 3 || shapes.get(&add.id)? != xs || gs.len() != 3 || gs[0] != xs[0] {
                return None;
            }
            let (c, g) = (xs[1], gs[1]);
            if g == 0 || c % g != 0 {
                return None;
            }
            let w = |name: &str| weights.iter().find(|(n, _)| n == name).map(|(_, t)| t);
            let all = |name: &str, v: f32| {
                w(name)
                    .and_then(|t| t.as_f32("w").ok())
                    .is_some_and(|d| d.len() == g && d.iter().all(|&x| x == v))
            };
            if !all(&inn.inputs[1], 1.0) || !all(&inn.inputs[2], 0.0) {
                return None;
            }
            let per_channel = |name: &str| -> Option<Tensor> {
                let t = w(name)?;
                (t.shape.first() == Some(&c) && t.shape[1..].iter().all(|&d| d == 1))
                    .then(|| Tensor::f32(vec![c], t.as_f32("w").ok()?.to_vec()).ok())?
            };
            Some((
                x,
                g,
                eps,
                (gamma.to_owned(), per_channel(gamma)?),
                (beta.to_owned(), per_channel(beta)?),
            ))
        })();
        let Some((x, groups, eps, (gn, gt), (bn, bt))) = found else {
            continue;
        };
        let mut refs = Vec::new();
        for (name, t) in [(gn, gt), (bn, bt)] {
            let r = format!("{name}.c");
            if !weights.iter().any(|(n, _)| n == &r) {
                weights.push((r.clone(), t));
            }
            refs.push(r);
        }
        nodes[i].op = Op::GroupNorm {
            groups,
            eps,
            silu: false,
            film: false,
        };
        nodes[i].inputs = vec![x, refs[0].clone(), refs[1].clone()];
    }
    film(nodes, shapes, &node_of);
    for i in 0..nodes.len() {
        if nodes[i].op != Op::Silu {
            continue;
        }
        let Some(src) = nodes[i].inputs.first().and_then(|s| node_of(s, nodes)) else {
            continue;
        };
        if let Op::GroupNorm {
            groups,
            eps,
            silu: false,
            film,
        } = src.op
        {
            nodes[i].op = Op::GroupNorm {
                groups,
                eps,
                silu: true,
                film,
            };
            nodes[i].inputs = src.inputs.clone();
        }
    }
}

/// `Add(Mul(GroupNorm(x), scale), shift)` with per-(n, c) `scale` and `shift` (the
/// timestep modulation of a diffusion UNet's residual blocks) becomes one GroupNorm with
/// `film`.
fn film(
    nodes: &mut [Node],
    shapes: &HashMap<String, Vec<usize>>,
    node_of: &dyn Fn(&str, &[Node]) -> Option<Node>,
) {
    for i in 0..nodes.len() {
        if nodes[i].op != (Op::Binary { f: BinFn::Add }) {
            continue;
        }
        let found = (|| {
            let add = &nodes[i];
            let is_mul =
                |s: &str| node_of(s, nodes).is_some_and(|n| n.op == (Op::Binary { f: BinFn::Mul }));
            let (m, shift) = split_operands(add, is_mul)?;
            let mul = node_of(m, nodes)?;
            let is_gn = |s: &str| {
                node_of(s, nodes).is_some_and(|n| {
                    matches!(
                        n.op,
                        Op::GroupNorm {
                            silu: false,
                            film: false,
                            ..
                        }
                    )
                })
            };
            let (g, scale) = split_operands(&mul, is_gn)?;
            let gn = node_of(g, nodes)?;
            let xs = shapes.get(&gn.id)?;
            let per_nc = |r: &str| {
                shapes.get(r).is_some_and(|s| {
                    s.len() == xs.len() && s[..2] == xs[..2] && s[2..].iter().all(|&d| d == 1)
                })
            };
            (per_nc(scale) && per_nc(shift) && shapes.get(&add.id) == Some(xs))
                .then(|| (gn, scale.to_owned(), shift.to_owned()))
        })();
        let Some((gn, scale, shift)) = found else {
            continue;
        };
        if let Op::GroupNorm { groups, eps, .. } = gn.op {
            nodes[i].op = Op::GroupNorm {
                groups,
                eps,
                silu: false,
                film: true,
            };
            let mut ins = gn.inputs.clone();
            ins.extend([scale, shift]);
            nodes[i].inputs = ins;
        }
    }
}
