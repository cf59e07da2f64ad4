"""Waymo Open Dataset formats: raw Frame segments, processed tf.Example files, synthetic trips. No Kedro here."""
