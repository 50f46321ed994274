//! The node daemon and its clients: `sst keygen`, `sst node init|run|sign-contract`,
//! `sst audit` (a node checked with its peers), and the client commands
//! `sst submit|state|events|status` over a node's client API ([`sst_client`]).

mod api;
mod audit;
mod cli;
mod config;
mod contracts;
mod guard;
mod init;
mod metrics;
mod run;
mod store;
mod transport;

pub(crate) use cli::{run as run_command, DaemonCommand};
