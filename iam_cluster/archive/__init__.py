"""Batch archives: folders, zip/tar archives, S3 prefixes and manifests transcribed on Ray Data."""
