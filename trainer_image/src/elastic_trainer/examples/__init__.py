"""Small real models that use the trainer library."""
