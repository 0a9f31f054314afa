"""AstroRIM: conditional forward operator + Recurrent Inference Machine for strong-lens source reconstruction."""

__version__ = "0.1.0"
