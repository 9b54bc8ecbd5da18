"""The Litestar control API: an app factory, one controller per resource, auth and error handling."""
