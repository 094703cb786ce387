//! Real libp2p swarms on loopback running netd's gossip layer: propagation through a
//! 20-node mesh, and a mesh where a fifth of the peers are Byzantine.

mod byzantine;
mod interop;
mod propagation;
