//! The control socket host: HTTP/WebSocket server, the only I/O owner of the control plane.
