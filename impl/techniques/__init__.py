"""Reference implementations of training techniques, one single-purpose module each."""
