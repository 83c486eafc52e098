//! seguro-core's integration tests, one module per subject, built as one test binary:
//! core is rebuilt for every mutant of a mutation run (scripts/mutants.sh), and one
//! binary links once where two dozen linked two dozen times.

mod client_common;
mod v2_common;

mod chat;
mod chat_trust;
mod client_api;
mod client_scripted;
mod client_token;
mod e2ee_vectors;
mod fingerprint_vectors;
mod identity;
mod json_reader;
mod key_pins;
mod low_order;
mod messages_vectors;
mod props;
mod store_format;
mod store_props;
mod trust_bounds;
mod v2_chat_prekeys;
mod v2_hello;
mod v2_json;
mod v2_live;
mod v2_sas_attacks;
mod v2_session;
mod v2_sessions;
mod v2_vectors;
mod v2_wire;
