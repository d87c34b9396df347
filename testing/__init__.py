"""Test support that ships with the repository but not in the predictor's code path: tiny random stacks in the
official on-disk layouts (``testing.tiny``) and output fingerprints (``testing.fingerprints``)."""
