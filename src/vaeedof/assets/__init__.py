"""The asset layer: every external input of the pipeline (subjects, backgrounds, HDRIs, weights)
comes from one of three sources: procedural (generated from the seed), download (URL + pinned
checksum, mirrors first) or local (a dataset folder/archive the user obtained)."""
