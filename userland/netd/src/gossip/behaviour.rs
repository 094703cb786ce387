//! The swarm: transport, gossipsub configuration (manual validation, content-hash
//! ids, per-topic size limits) and peer scoring.

use super::{GossipConfig, GossipError};
use havn_proto::mesh::Topic;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    identify, identity::Keypair, noise, request_response, tcp, yamux, StreamProtocol, Swarm,
};
use sha3::{Digest, Sha3_256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Below this score a peer is graylisted: everything it sends is ignored.
pub const GRAYLIST_THRESHOLD: f64 = -400.0;

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    /// `/havn/1/leaves`: a validator asks an executing node for a job's leaves.
    pub fetch: request_response::json::Behaviour<super::LeavesRequest, super::LeavesResponse>,
}

/// The request-response protocol commitments are fetched over (never gossip).
pub const FETCH_PROTOCOL: &str = "/havn/1/leaves";

/// A message's id: the first 20 bytes of `sha3(topic ‖ 0 ‖ data)`: a replay of the
/// same bytes is the same message, whoever forwards it.
pub fn message_id(m: &gossipsub::Message) -> MessageId {
    let mut h = Sha3_256::new();
    h.update(m.topic.as_str().as_bytes());
    h.update([0u8]);
    h.update(&m.data);
    let d = h.finalize();
    MessageId::from(d.get(..20).unwrap_or(&d).to_vec())
}

/// Peer scoring: one invalid message outweighs everything a peer did right (the
/// application component carries our own penalties), and loopback is exempt from
/// the IP-colocation penalty so a mesh on one machine is not punished for it.
pub fn peer_score_params() -> PeerScoreParams {
    let mut p = PeerScoreParams {
        app_specific_weight: 1.0,
        ..PeerScoreParams::default()
    };
    p.ip_colocation_factor_whitelist
        .insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    p.ip_colocation_factor_whitelist
        .insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    for t in Topic::ALL {
        let tp = TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 10.0,
            first_message_deliveries_weight: 0.5,
            first_message_deliveries_cap: 20.0,
            // No mesh-delivery quota: quiet topics must not punish honest peers.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.99,
            ..TopicScoreParams::default()
        };
        p.topics.insert(IdentTopic::new(t.name()).hash(), tp);
    }
    p
}

fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -100.0,
        publish_threshold: -200.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 2.0,
    }
}

pub(super) fn build(
    config: &GossipConfig,
    identity: Keypair,
) -> Result<Swarm<Behaviour>, GossipError> {
    let setup = |e: &dyn std::fmt::Display| GossipError::Setup(e.to_string());
    let mut gs = gossipsub::ConfigBuilder::default();
    gs.validation_mode(ValidationMode::Anonymous)
        .message_id_fn(message_id)
        .heartbeat_interval(config.heartbeat)
        .max_transmit_size(Topic::Manifest.max_size() + 1024)
        .duplicate_cache_time(Duration::from_secs(120))
        // A receipt is worth more late than never: a loaded 2-core host must not drop
        // forwards after gossipsub's default 1 s.
        .forward_queue_duration(Duration::from_secs(5));
    if config.validate {
        gs.validate_messages();
    }
    for t in Topic::ALL {
        // A little over the topic's bound, so an oversized message reaches our
        // validator (and is penalised) rather than vanishing in the codec.
        gs.max_transmit_size_for_topic(t.max_size() + 512, IdentTopic::new(t.name()).hash());
    }
    let gs_config = gs.build().map_err(|e| setup(&e))?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gs_config.clone())?;
            gossipsub.with_peer_score(peer_score_params(), thresholds())?;
            Ok(Behaviour {
                gossipsub,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/havn/1".into(),
                    key.public(),
                )),
                fetch: request_response::json::Behaviour::new(
                    [(
                        StreamProtocol::new(FETCH_PROTOCOL),
                        request_response::ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                ),
            })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    let mut swarm = swarm;
    for t in &config.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(t.name()))
            .map_err(|e| setup(&e))?;
    }
    Ok(swarm)
}
