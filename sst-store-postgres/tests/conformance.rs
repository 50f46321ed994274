//! The conformance suite against a real PostgreSQL server (`SST_POSTGRES_URL`), one fresh
//! schema per case, dropped when the case ends.

mod common;

conformance_tests::suite!(common::factory(None));
