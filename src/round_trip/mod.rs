//! The vendor clients against their simulators, in process: two crates that may not see each
//! other's code (the simulators verify with their own), checked against each other here.

mod k3cloud;
mod sources;

#[test]
fn every_builtin_kind_is_simulated_and_every_simulated_kind_is_built_in() {
    let known: Vec<&str> = tidemark_endpoints::builtins().iter().map(|e| e.spec.kind).collect();
    let simulated: Vec<&str> = crate::simulate::SIM_KINDS.iter().map(|k| k.spec.kind).collect();
    assert_eq!(known, simulated);
}

#[test]
fn every_kinds_schema_compiles_for_the_transcoder() {
    for spec in tidemark_endpoints::builtins().iter().map(|e| &e.spec) {
        crate::avro::RecordCodec::from_avsc(spec.schema).unwrap_or_else(|e| panic!("{}: {e}", spec.kind));
    }
}
