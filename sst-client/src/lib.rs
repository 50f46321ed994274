#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod auth;
mod client;
mod error;

pub use client::{Client, EventStream};
pub use error::ClientError;
