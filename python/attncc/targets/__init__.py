"""Target descriptions below the compile driver: what each target's code
generation depends on (the CPU's ISA class; the GPU's chips live in
attncc.gpu)."""
