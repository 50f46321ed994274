//! Broker adapters, one module per broker, each behind the cargo feature of the same name.
