"""Tooling around the asv suite: offline publishing, reports, the main job."""
