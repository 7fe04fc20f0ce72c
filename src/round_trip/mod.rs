//! The vendor clients against their simulators, in process: two crates that may not see each
//! other's code (the simulators verify with their own), checked against each other here.

mod k3cloud;
mod sources;

#[test]
fn every_builtin_kind_and_every_shipped_endpoint_is_simulated() {
    let shipped = tidemark_endpoints::Endpoints::load_dir(&sources::shipped_endpoints()).unwrap();
    let mut known: Vec<&str> = shipped.iter().map(|e| e.spec.kind).collect();
    let mut simulated = sources::sim().kinds();
    known.sort();
    simulated.sort();
    assert_eq!(known, simulated);
}

#[test]
fn every_kinds_schema_compiles_for_the_transcoder() {
    for spec in tidemark_endpoints::builtins().iter().map(|e| &e.spec) {
        crate::avro::RecordCodec::from_avsc(spec.schema).unwrap_or_else(|e| panic!("{}: {e}", spec.kind));
    }
}
