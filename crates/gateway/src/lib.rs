//! landfall-gateway
