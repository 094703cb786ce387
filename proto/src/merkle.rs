//! The one binary Merkle tree Havn commits with: a job's runtime hash over its DAG
//! nodes' outputs, and an epoch settlement over its receipts and its liveness set.
//!
//! leaf_i = sha3(0x00 ‖ h_i); inner = sha3(0x01 ‖ l ‖ r); an odd node at a level is
//! promoted unchanged; an empty tree has root sha3(0x02). A path is the list of
//! (sibling, sibling is on the left) from the bottom up.

use sha3::{Digest, Sha3_256};

/// A 32-byte node of the tree.
pub type Node = [u8; 32];

/// The leaf hash of a committed value.
pub fn leaf(h: &Node) -> Node {
    let mut s = Sha3_256::new();
    s.update([0u8]);
    s.update(h);
    s.finalize().into()
}

/// The parent of two nodes.
pub fn inner(l: &Node, r: &Node) -> Node {
    let mut s = Sha3_256::new();
    s.update([1u8]);
    s.update(l);
    s.update(r);
    s.finalize().into()
}

fn next_level(level: &[Node]) -> Vec<Node> {
    level
        .chunks(2)
        .filter_map(|c| match c {
            [l, r] => Some(inner(l, r)),
            [one] => Some(*one),
            _ => None,
        })
        .collect()
}

/// The root over values (in order).
pub fn merkle_root(values: &[Node]) -> Node {
    let mut level: Vec<Node> = values.iter().map(leaf).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level
        .first()
        .copied()
        .unwrap_or_else(|| Sha3_256::digest([2u8]).into())
}

/// Every level of the tree, leaves first (for taking many paths from one tree).
pub fn merkle_levels(values: &[Node]) -> Vec<Vec<Node>> {
    let mut levels = vec![values.iter().map(leaf).collect::<Vec<_>>()];
    while let Some(last) = levels.last().filter(|l| l.len() > 1) {
        let next = next_level(last);
        levels.push(next);
    }
    levels
}

/// The sibling path of leaf `index` from [`merkle_levels`].
pub fn path_from_levels(levels: &[Vec<Node>], mut index: usize) -> Vec<(Node, bool)> {
    let mut path = Vec::new();
    for level in levels.iter().take(levels.len().saturating_sub(1)) {
        let sib = index ^ 1;
        if let Some(h) = level.get(sib) {
            path.push((*h, sib < index));
        }
        index /= 2;
    }
    path
}

/// Sibling path for leaf `index`: (sibling, sibling_is_left) from the bottom up.
pub fn merkle_path(values: &[Node], index: usize) -> Vec<(Node, bool)> {
    path_from_levels(&merkle_levels(values), index)
}

/// The sibling sides (`true` = sibling on the left) that leaf `index` of a tree of `n`
/// leaves must have, bottom up: a path of another shape opens another position.
pub fn path_shape(mut index: usize, mut n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    while n > 1 {
        let sib = index ^ 1;
        if sib < n {
            out.push(sib < index);
        }
        index /= 2;
        n = n.div_ceil(2);
    }
    out
}

/// The root a value's sibling path leads to (the inverse of [`merkle_path`]).
pub fn path_root(value: &Node, path: &[(Node, bool)]) -> Node {
    let mut acc = leaf(value);
    for (sib, left) in path {
        acc = if *left {
            inner(sib, &acc)
        } else {
            inner(&acc, sib)
        };
    }
    acc
}

/// Whether `path` opens `value` at position `index` of an `n`-leaf tree with `root`:
/// the path's shape must be the one that position has, so a proof for one position
/// never passes as another.
pub fn verify_path(
    root: &Node,
    value: &Node,
    index: usize,
    n: usize,
    path: &[(Node, bool)],
) -> bool {
    index < n
        && path.iter().map(|(_, left)| *left).eq(path_shape(index, n))
        && path_root(value, path) == *root
}

/// A job's runtime hash: `sha3("havn-exec/runtime/v1" ‖ 0 ‖ manifest checksum ‖
/// seed LE ‖ root)`.
pub fn runtime_hash(checksum: &Node, seed: u64, root: &Node) -> Node {
    let mut s = Sha3_256::new();
    s.update(b"havn-exec/runtime/v1\0");
    s.update(checksum);
    s.update(seed.to_le_bytes());
    s.update(root);
    s.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_verifies_only_at_its_own_position() {
        for n in 1..=9usize {
            let values: Vec<Node> = (0..n).map(|i| [i as u8; 32]).collect();
            let root = merkle_root(&values);
            for i in 0..n {
                let p = merkle_path(&values, i);
                assert!(verify_path(&root, &values[i], i, n, &p), "n={n} i={i}");
                for j in (0..n).filter(|&j| j != i) {
                    assert!(
                        !verify_path(&root, &values[i], j, n, &p),
                        "n={n}: {i} passed as {j}"
                    );
                }
            }
        }
    }
}
