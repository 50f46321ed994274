//! Example contracts: the real-estate deal (v1 and its successor v2) and a request for quotes.

mod real_estate;
mod rfq;

pub use real_estate::{RealEstateDeal, RealEstateDealV2, REAL_ESTATE};
pub use rfq::{Rfq, RFQ};
