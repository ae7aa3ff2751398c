"""Reference kernels attncc is compared with (see `attncc compare --b triton`)."""
