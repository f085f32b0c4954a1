//! The control plane state (channels, bridges, applications): a sans-IO registry.
