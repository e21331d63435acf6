"""Service internals: configuration, job store and runner, voice registry, speak policy."""
