//! Philox4x32-10 counter-based RNG (Salmon et al., SC'11). Every random number is a pure
//! function of (job seed, node index, element index): no state, no order dependence.

use crate::detmath;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One Philox4x32-10 block: 4 random words for a 128-bit counter under a 64-bit key.
pub fn philox4x32_10(mut ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut k0, mut k1) = (key[0], key[1]);
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(ctr[0]);
        let p1 = u64::from(M1) * u64::from(ctr[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        ctr = [hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0];
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    ctr
}

/// The stream keyed by (seed, node): block `i` is `philox(ctr = [i lo, i hi, node, 0], seed)`.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub seed: u64,
    pub node: u32,
}

impl Stream {
    /// Four words for block `index`.
    pub fn block(&self, index: u64) -> [u32; 4] {
        philox4x32_10(
            [index as u32, (index >> 32) as u32, self.node, 0],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }
    /// Uniform in [0, 1) with 24 random bits, from word 0 of block `index`.
    pub fn uniform(&self, index: u64) -> f32 {
        (self.block(index)[0] >> 8) as f32 * (1.0 / 16_777_216.0)
    }
    /// Standard normal for element `index` (Box–Muller on words 0 and 1 of its block,
    /// with our own log, sqrt (IEEE, correctly rounded) and cos).
    pub fn normal(&self, index: u64) -> f32 {
        let b = self.block(index);
        let u1 = ((b[0] >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
        let u2 = (b[1] >> 8) as f32 * (1.0 / 16_777_216.0);
        let r = (-2.0 * detmath::log(u1)).sqrt();
        r * detmath::cos(2.0 * std::f32::consts::PI * u2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn philox_known_answer() {
        // Random123 kat_vectors: philox4x32 10 rounds.
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([0xffffffff; 4], [0xffffffff; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }
}
