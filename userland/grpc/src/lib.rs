//! The orchestrator gRPC contract, `havn.v1.Intake` (`proto/havn/v1/intake.proto`,
//! the documented contract): generated messages, the tonic server trait
//! ([`v1::intake_server`]) and client ([`v1::intake_client`]), and the encoded
//! descriptor set that netd's reflection service serves.

/// `package havn.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("havn.v1");
}

/// The encoded `FileDescriptorSet` of `intake.proto` (for server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/intake_descriptor.bin"));

/// The full service name (`havn.v1.Intake`), as health checks and reflection name it.
pub const SERVICE: &str = "havn.v1.Intake";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_descriptor_set_names_the_service_and_its_five_methods() {
        // Names appear as UTF-8 inside the encoded descriptors.
        let fds = String::from_utf8_lossy(FILE_DESCRIPTOR_SET);
        assert!(
            fds.contains("Intake"),
            "service missing from the descriptor set"
        );
        for m in [
            "AcceptJob",
            "GetJob",
            "WatchJob",
            "GetReceipt",
            "UploadArtifact",
        ] {
            assert!(
                fds.contains(m),
                "method {m} missing from the descriptor set"
            );
        }
    }

    #[test]
    fn messages_round_trip_and_unknown_enum_values_stay_visible() {
        let r = v1::AcceptJobRequest {
            job_id: "j1".into(),
            compute_class: 9,
            ..Default::default()
        };
        let back = v1::AcceptJobRequest::decode(r.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(back.job_id, "j1");
        // An unknown value decodes (proto3 open enums) but does not convert: netd
        // refuses it naming the field.
        assert!(v1::ComputeClass::try_from(back.compute_class).is_err());
    }
}
