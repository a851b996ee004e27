"""An example effstudio plugin: a cosine-similarity attention kind and a segment-length model view."""
