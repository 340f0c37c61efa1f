//! Rate limits under many simulated clients.
