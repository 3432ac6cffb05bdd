"""Database connectors: readers (capture), writers (apply), introspection, setup and checks."""
