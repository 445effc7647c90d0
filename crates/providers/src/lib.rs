//! landfall-providers
