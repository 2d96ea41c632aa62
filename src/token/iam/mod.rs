//! IAM authentication for ElastiCache and MemoryDB: tokens signed with the platform's AWS
//! credentials. (Filled in below.)

mod sign;

pub use sign::{Service, SignError, TOKEN_LIFETIME, TokenRequest};
