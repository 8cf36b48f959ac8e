//! The backends of [`super::GraphStore`]: the embedded default and Neo4j (feature `neo4j`), and
//! the conformance suite both pass (feature `testing`).

#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "neo4j")]
pub mod neo4j;
