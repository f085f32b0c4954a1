//! ARI: the REST + WebSocket contract (route table, api-docs, models, errors).
