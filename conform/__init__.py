"""Lockstep conformance: the model as the oracle for any provider."""
